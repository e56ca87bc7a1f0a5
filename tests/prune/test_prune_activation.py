"""Activation-aware criteria (wanda, flap, come), cross-group standardization, and compensate-bias.

The formulas are checked against activations recorded with a plain forward hook on the dense model; the
pass-level tests check calibration handling, that heads and MLP channels are ranked in one budget, that bias
compensation keeps a pruned linear's mean output, and that compensated models save and reload."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import graphpress
from graphpress.analysis.coupling import analyze_coupling
from graphpress.errors import PassError
from graphpress.passes.prune import ImportanceContext, get_importance, standardize_scores
from graphpress.passes.prune.input_stats import collect_input_statistics

CALIBRATION = torch.randint(0, 96, (4, 16), generator=torch.Generator().manual_seed(3))
TOKENS = torch.randint(0, 96, (1, 8), generator=torch.Generator().manual_seed(4))
NO_HIDDEN = "model.embed_tokens"  # keeps the residual-stream group out of scope (FLAP prunes heads and MLP only)


def tiny_llama(layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _inputs_of(model: torch.nn.Module, module: torch.nn.Module) -> torch.Tensor:
    """Every calibration token's input to ``module`` (a full dense forward, for reference)."""
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        model(CALIBRATION, use_cache=False)
    handle.remove()
    return torch.cat(seen).double()


def _group(result, suffix: str):
    return next(g for g in result.groups if g.prunable and g.name().startswith(suffix))


@pytest.fixture(scope="module")
def scored():
    model = tiny_llama()
    graph = graphpress.trace(model, (TOKENS,), example_kwargs={"use_cache": False})
    result = analyze_coupling(graph)
    ctx = ImportanceContext(graph, result, statistics=collect_input_statistics(graph, CALIBRATION))
    return model, result, ctx


@pytest.mark.parametrize("name", ["wanda", "flap", "come"])
def test_criteria_match_their_formulas_on_recorded_activations(scored, name):
    model, result, ctx = scored
    formulas = {
        "wanda": lambda w, x: w.abs().sum(0) * x.norm(dim=0),
        "flap": lambda w, x: w.square().sum(0) * x.var(dim=0, unbiased=True),
        "come": lambda w, x: w.norm(dim=0) * x.abs().mean(0),
    }
    layer = model.model.layers[1]
    mlp = _group(result, "model.layers.1.mlp")
    down = layer.mlp.down_proj
    want = formulas[name](down.weight.detach().double(), _inputs_of(model, down)).numpy()
    got = get_importance(name)(ctx, mlp)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # An attention unit (2 query heads of head_dim 8 with their KV head) owns 16 columns of o_proj.
    heads = _group(result, "model.layers.1.self_attn")
    o_proj = layer.self_attn.o_proj
    per_column = formulas[name](o_proj.weight.detach().double(), _inputs_of(model, o_proj)).numpy()
    np.testing.assert_allclose(get_importance(name)(ctx, heads), per_column.reshape(2, 16).sum(1), rtol=1e-6)


def test_standardize_kind_compares_layers_group_equalizes_them(scored):
    _, result, _ = scored
    mlps = [_group(result, f"model.layers.{i}.mlp").index for i in (0, 1)]
    heads = [_group(result, f"model.layers.{i}.self_attn").index for i in (0, 1)]
    rng = np.random.default_rng(0)
    scores = {mlps[0]: rng.random(48) * 10, mlps[1]: rng.random(48), heads[0]: np.array([5.0, 7.0]),
              heads[1]: np.array([1.0, 3.0])}
    kind = standardize_scores(result, mlps + heads, scores, "kind")
    assert abs(np.concatenate([kind[g] for g in mlps]).mean()) < 1e-9
    assert np.allclose(np.concatenate([kind[g] for g in heads]), np.array([1.0, 3.0, -3.0, -1.0]) / np.sqrt(5))
    assert kind[mlps[1]].max() < np.median(kind[mlps[0]])  # the weak layer stays weak against the strong one
    group = standardize_scores(result, mlps + heads, scores, "group")
    for g in mlps:
        assert abs(group[g].mean()) < 1e-9 and abs(group[g].std() - 1) < 1e-9


def _optimize(model, pipeline, **kwargs):
    return graphpress.optimize(model, pipeline, example_inputs=(TOKENS,), example_kwargs={"use_cache": False},
                               return_report=True, **kwargs)


def test_flap_global_ranks_heads_and_channels_in_one_budget():
    model = tiny_llama(layers=4)
    pruned, report = _optimize(model, f"prune-channels{{ratio=0.3,importance=flap,scope=global,ignore={NO_HIDDEN}}}",
                               calibration=CALIBRATION)
    stats = report.records[-1].stats
    assert abs(stats["achieved_ratio"] - 0.3) < 0.05 and stats["linears_recorded"] > 0
    widths = [layer.mlp.up_proj.out_features for layer in pruned.model.layers]
    assert len(set(widths)) > 1  # adaptive per-layer widths, not a uniform cut
    assert pruned.config.hidden_size == 32
    local, _ = _optimize(model, f"prune-channels{{ratio=0.3,importance=l2,ignore={NO_HIDDEN}}}")
    assert not all(torch.equal(a.mlp.up_proj.weight, b.mlp.up_proj.weight) if a.mlp.up_proj.weight.shape ==
                   b.mlp.up_proj.weight.shape else False for a, b in zip(pruned.model.layers, local.model.layers))


@pytest.mark.parametrize("pipeline", ["prune-channels{ratio=0.3,importance=wanda}", "prune-heads{ratio=0.5,importance=come}"])
def test_activation_criteria_need_calibration(pipeline):
    with pytest.raises(PassError, match="calibration"):
        _optimize(tiny_llama(), pipeline)


def _mean_output(model, layer: int) -> torch.Tensor:
    return _outputs(model, layer).mean(0)


def _outputs(model, layer: int) -> torch.Tensor:
    seen = []
    down = model.model.layers[layer].mlp.down_proj
    handle = down.register_forward_hook(lambda m, a, out: seen.append(out.detach().reshape(-1, out.shape[-1])))
    with torch.no_grad():
        model(CALIBRATION, use_cache=False)
    handle.remove()
    return torch.cat(seen).double()


def test_compensate_bias_keeps_the_mean_output_of_a_pruned_linear():
    model = tiny_llama()
    # Only MLP channels go, so layer 0's down_proj sees exactly the dense model's kept channels.
    pipeline = f"prune-channels{{ratio=0.4,importance=flap,ignore={NO_HIDDEN}|*.self_attn*}}"
    plain, _ = _optimize(model, pipeline, calibration=CALIBRATION)
    compensated, report = _optimize(model, pipeline + ",compensate-bias", calibration=CALIBRATION)
    assert plain.model.layers[0].mlp.down_proj.bias is None
    assert report.records[-1].stats["linears"] == 2
    dense_mean = _mean_output(model, 0)
    assert torch.allclose(_mean_output(compensated, 0), dense_mean, atol=1e-6)
    assert not torch.allclose(_mean_output(plain, 0), dense_mean, atol=1e-4)
    assert report.records[-1].error_vs_original < report.records[-2].error_vs_original


def test_compensate_bias_works_after_a_statistics_free_criterion_and_refuses_alone():
    _, report = _optimize(tiny_llama(), f"prune-channels{{ratio=0.3,importance=l2,ignore={NO_HIDDEN}}},compensate-bias",
                          calibration=CALIBRATION)
    assert report.records[-1].stats["linears"] == 4  # o_proj and down_proj of 2 layers
    with pytest.raises(PassError, match="no pruning to compensate"):
        _optimize(tiny_llama(), "compensate-bias", calibration=CALIBRATION)


def test_compensated_model_reloads_with_from_pretrained_and_load_pruned(tmp_path):
    from graphpress.backends.hf_reload import load_pruned

    model = tiny_llama()
    uniform, _ = _optimize(model, "prune-heads{ratio=0.5,importance=wanda},compensate-bias", calibration=CALIBRATION)
    assert uniform.config.attention_bias and not uniform.config.mlp_bias
    assert uniform.model.layers[0].self_attn.q_proj.bias is not None  # zero where the switch now asks for a bias
    uniform.save_pretrained(tmp_path / "uniform")
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path / "uniform").eval()
    assert torch.allclose(reloaded(TOKENS).logits, uniform(TOKENS).logits, atol=1e-5)
    varied, _ = _optimize(model, f"prune-channels{{ratio=0.3,importance=flap,scope=global,ignore={NO_HIDDEN}}},"
                                 "compensate-bias", calibration=CALIBRATION)
    varied.save_pretrained(tmp_path / "varied")
    assert torch.allclose(load_pruned(tmp_path / "varied")(TOKENS).logits, varied(TOKENS).logits, atol=1e-5)


def test_reconstruct_fits_the_dense_outputs_better_than_bias_compensation():
    model = tiny_llama()
    pipeline = f"prune-channels{{ratio=0.4,importance=wanda,ignore={NO_HIDDEN}|*.self_attn*}}"
    dense = _outputs(model, 0)
    errors = {}
    for recovery in ("", ",compensate-bias", ",reconstruct", ",compensate-bias,reconstruct", ",reconstruct{bias=false}"):
        pruned, report = _optimize(model, pipeline + recovery, calibration=CALIBRATION)
        errors[recovery] = float((_outputs(pruned, 0) - dense).square().mean())
    assert errors[",reconstruct"] < errors[",compensate-bias"] < errors[""]
    assert errors[",reconstruct{bias=false}"] < errors[""]
    # after compensate-bias, reconstruct recomputes the bias instead of adding the compensation twice
    assert errors[",compensate-bias,reconstruct"] == pytest.approx(errors[",reconstruct"], rel=1e-4, abs=1e-12)
    with pytest.raises(PassError, match="no pruning to refit"):
        _optimize(model, "reconstruct", calibration=CALIBRATION)


def test_activation_criteria_and_recovery_passes_declare_calibration():
    from graphpress.passes import resolve_passes

    passes = resolve_passes("prune-heads{importance=flap},prune-channels{importance=come},compensate-bias,reconstruct")
    assert [p.uses_calibration() for p in passes] == [True, True, True, True]
