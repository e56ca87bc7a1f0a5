"""Pruning mixture-of-experts models: the module attributes and config fields a Hugging Face MoE keeps
beside its fused expert weights follow the new widths, save/load round trips, and other MoE blocks
(Qwen2-MoE with a shared expert) work through the same per-op rules."""

from __future__ import annotations

import pytest
import torch

import graphpress
from graphpress.backends.hf_moe import experts_widths, moe_config_updates
from graphpress.backends.hf_reload import load_pruned

transformers = pytest.importorskip("transformers")

TOKENS = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(1))


def _model(config_name: str, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(vocab_size=128, hidden_size=64, intermediate_size=96,
                                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                max_position_embeddings=64, **extra)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def _mixtral() -> torch.nn.Module:
    return _model("MixtralConfig", num_local_experts=4, num_experts_per_tok=2)


def _prune(model: torch.nn.Module, options: str = "ratio=0.3") -> torch.nn.Module:
    return graphpress.optimize(model, f"prune-channels{{{options}}}", example_kwargs={"input_ids": TOKENS,
                                                                                      "use_cache": False})


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=TOKENS, use_cache=False).logits


def test_module_attributes_follow_the_pruned_tensors() -> None:
    pruned = _prune(_mixtral())
    hidden = pruned.config.hidden_size
    assert hidden < 64 and hidden % 8 == 0
    for layer, widths in zip(pruned.model.layers, pruned.config.graphpress_layer_widths):
        experts, router = layer.mlp.experts, layer.mlp.gate
        intermediate = experts.gate_up_proj.shape[1] // 2
        assert experts.gate_up_proj.shape == (4, 2 * intermediate, hidden)
        assert experts.down_proj.shape == (4, hidden, intermediate)
        assert intermediate % 4 == 0  # 16-byte strides: transformers' grouped GEMM refuses others
        assert (experts.intermediate_dim, experts.hidden_dim) == (intermediate, hidden)
        assert router.weight.shape == (4, hidden) and router.hidden_dim == hidden
        assert widths["moe_intermediate_size"] == intermediate
    assert pruned.config.num_local_experts == 4


def test_uniform_expert_widths_round_trip_through_from_pretrained(tmp_path) -> None:
    # only the experts in scope (no residual stream, no heads): every layer's experts lose exactly a quarter
    pruned = _prune(_mixtral(), "ratio=0.25,ignore=model.embed_tokens|*.self_attn.*")
    assert pruned.config.intermediate_size == 72 and pruned.config.hidden_size == 64
    pruned.save_pretrained(tmp_path)
    reloaded = transformers.MixtralForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.model.layers[1].mlp.experts.gate_up_proj.shape == (4, 144, 64)
    assert torch.allclose(_logits(reloaded), _logits(pruned), atol=1e-5)


def test_uneven_expert_widths_round_trip_through_load_pruned(tmp_path) -> None:
    pruned = _prune(_mixtral())
    widths = {w["moe_intermediate_size"] for w in pruned.config.graphpress_layer_widths}
    pruned.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path)
    assert {experts_widths(layer.mlp.experts)[0] for layer in reloaded.model.layers} == widths
    assert reloaded.model.layers[0].mlp.gate.hidden_dim == pruned.config.hidden_size
    assert torch.allclose(_logits(reloaded), _logits(pruned), atol=1e-5)


def test_config_field_is_moe_intermediate_size_where_the_config_has_one() -> None:
    class Dense:  # Mixtral / OLMoE: experts are built from intermediate_size
        intermediate_size = 96

    class Moe(Dense):  # Qwen2-MoE: dense layers keep intermediate_size
        moe_intermediate_size = 48
        shared_expert_intermediate_size = 96

    widths = [{"moe_intermediate_size": 40, "shared_expert_intermediate_size": 80}] * 2
    assert moe_config_updates(Dense(), widths) == {"intermediate_size": 40}
    assert moe_config_updates(Moe(), widths) == {"moe_intermediate_size": 40, "shared_expert_intermediate_size": 80}
    assert moe_config_updates(Dense(), [{"moe_intermediate_size": 40, "intermediate_size": 96}]) == {}
    assert moe_config_updates(Dense(), [{"moe_intermediate_size": 40}, {"moe_intermediate_size": 44}]) == {}


def test_qwen2_moe_with_shared_expert_prunes_and_runs() -> None:
    model = _model("Qwen2MoeConfig", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48,
                   shared_expert_intermediate_size=96)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", return_report=True,
                                         example_kwargs={"input_ids": TOKENS, "use_cache": False})
    assert 0.27 <= report.records[-1].stats["achieved_ratio"] <= 0.33
    assert report.records[-1].stats["uncovered_ops"] == 0
    widths = pruned.config.graphpress_layer_widths
    assert all(w["moe_intermediate_size"] <= 48 and w["shared_expert_intermediate_size"] <= 96 for w in widths)
    assert any(w["moe_intermediate_size"] < 48 for w in widths)
    assert _logits(pruned).shape == _logits(model).shape
