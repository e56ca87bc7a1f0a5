"""Coupling of mixture-of-experts layers (fused 3-D expert weights behind a top-k router), found by the
per-op rules alone: the shared intermediate axis of a layer's experts is one group, the hidden size runs
through the router and the experts, and the expert axis (what TopK picks from) is never prunable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphpress.analysis.coupling import analyze_coupling, compute_coupling
from graphpress.frontends.torch_export import trace
from graphpress.ir import GRAPHPRESS_DOMAIN, Graph
from graphpress.passes.prune.importance import ImportanceContext, get_importance

transformers = pytest.importorskip("transformers")

HIDDEN, INTERMEDIATE, EXPERTS = 32, 24, 4


@pytest.fixture(scope="module")
def mixtral_graph() -> Graph:
    torch.manual_seed(0)
    config = transformers.MixtralConfig(vocab_size=64, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=32, num_local_experts=EXPERTS, num_experts_per_tok=2)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    return trace(model, {"input_ids": torch.randint(0, 64, (1, 6))})


def _groups_with(result, key: str) -> dict[int, object]:
    return {m.axis: g for g in result.groups for m in g.members if m.key == key}


def test_topk_freezes_the_axis_it_picks_from() -> None:
    graph = Graph("router")
    x = graph.add_input("x", (5, 8), torch.float32)
    weight = graph.constant(torch.randn(6, 8), "router.weight")
    weight.param.kind = "parameter"
    node = graph.make_node("Linear", [x, weight], 1, domain=GRAPHPRESS_DOMAIN)
    logits = node.outputs[0]
    logits.shape, logits.dtype = (5, 6), torch.float32
    topk = graph.make_node("TopK", [logits, graph.constant(torch.tensor([2]), "k")], 2, {"axis": 1})
    for out, dtype in zip(topk.outputs, (torch.float32, torch.int64)):
        out.shape, out.dtype = (5, 2), dtype
    graph.outputs.extend(topk.outputs)
    result = compute_coupling(graph)
    (group,) = [g for g in result.groups if any(m.key == "router.weight" and m.axis == 0 for m in g.members)]
    assert group.frozen.all() and not group.prunable
    assert any("TopK" in reason for reason in group.frozen_reasons.values())
    assert result.state.labels[topk.outputs[0]] == [None, None]  # k axis: no channel ids


def test_each_layers_experts_share_one_intermediate_group(mixtral_graph) -> None:
    result = analyze_coupling(mixtral_graph)
    for layer in range(2):
        prefix = f"model.layers.{layer}.mlp.experts"
        group = _groups_with(result, f"{prefix}.gate_up_proj")[1]
        assert {(m.key, m.axis) for m in group.members} == {(f"{prefix}.gate_up_proj", 1), (f"{prefix}.down_proj", 2)}
        assert group.units == INTERMEDIATE and group.prunable_units == INTERMEDIATE
        gate_up = next(m for m in group.members if m.axis == 1)
        # unit u = gate row u and up row I + u (one chunk(2) channel) of every expert at once
        assert np.array_equal(gate_up.unit_of[:INTERMEDIATE], gate_up.unit_of[INTERMEDIATE:])
        down = next(m for m in group.members if m.axis == 2)
        assert np.array_equal(down.unit_of, gate_up.unit_of[:INTERMEDIATE])


def test_hidden_size_runs_through_router_and_experts(mixtral_graph) -> None:
    result = analyze_coupling(mixtral_graph)
    hidden = _groups_with(result, "model.embed_tokens.weight")[1]
    members = {(m.key, m.axis) for m in hidden.members}
    for layer in range(2):
        prefix = f"model.layers.{layer}.mlp"
        assert {(f"{prefix}.gate.weight", 1), (f"{prefix}.experts.gate_up_proj", 2),
                (f"{prefix}.experts.down_proj", 1)} <= members
    assert hidden.units == HIDDEN and hidden.prunable


def test_expert_count_is_never_prunable(mixtral_graph) -> None:
    result = analyze_coupling(mixtral_graph)
    for layer in range(2):
        prefix = f"model.layers.{layer}.mlp"
        for key in (f"{prefix}.gate.weight", f"{prefix}.experts.gate_up_proj", f"{prefix}.experts.down_proj"):
            group = _groups_with(result, key)[0]
            assert group.units == EXPERTS and not group.prunable, key
    assert not result.uncovered


def test_l2_importance_sums_every_experts_slices(mixtral_graph) -> None:
    result = analyze_coupling(mixtral_graph)
    module = mixtral_graph.module.model.layers[0].mlp.experts
    group = _groups_with(result, "model.layers.0.mlp.experts.gate_up_proj")[1]
    scores = get_importance("l2")(ImportanceContext(mixtral_graph, result), group)
    gate, up = module.gate_up_proj.detach().double().chunk(2, dim=1)  # [E, I, H] each
    down = module.down_proj.detach().double()  # [E, H, I]
    want = (gate.square().sum((0, 2)) + up.square().sum((0, 2)) + down.square().sum((0, 1))).sqrt()
    assert np.allclose(scores, want.numpy())
