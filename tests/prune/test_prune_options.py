"""Options and guarantees of prune-channels / prune-heads: identity at ratio 0, refusal of an emptying ratio,
ignore patterns, head-only pruning with GQA kept, taylor with calibration, and Hugging Face save/reload."""

from __future__ import annotations

import pytest
import torch

import graphpress
from graphpress.backends.hf_fixups import layer_widths
from graphpress.backends.hf_reload import load_pruned
from graphpress.errors import PassError


def _prune(zoo, name, pipeline, **extra):
    case = zoo.build(name)
    pruned, report = graphpress.optimize(case.model, pipeline, return_report=True, **zoo.kwargs(case), **extra)
    return case, pruned, report.records[-1].stats


def test_ratio_zero_is_exact_identity(zoo):
    case, pruned, stats = _prune(zoo, "llama", "prune-channels{ratio=0}")
    assert all(torch.equal(a, b) for a, b in zip(zoo.call(pruned, case), zoo.call(case.model, case)))
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in case.model.parameters())


def test_ratio_that_would_empty_groups_is_refused_and_names_them(zoo):
    with pytest.raises(PassError, match="would empty a group.*self_attn"):
        _prune(zoo, "llama", "prune-heads{ratio=0.8}")  # 2 KV heads per layer: at most half can go


def test_ignore_pattern_keeps_matching_modules(zoo):
    case, pruned, stats = _prune(zoo, "llama", "prune-channels{ratio=0.3,ignore=model.layers.0.mlp.*}")
    original = case.model.model.layers[0].mlp
    assert pruned.model.layers[0].mlp.up_proj.out_features == original.up_proj.out_features
    assert stats["achieved_ratio"] > 0.27  # the rest of the model carries the ratio


def test_prune_heads_keeps_gqa_ratio_and_reports_rounding(zoo):
    case, pruned, stats = _prune(zoo, "gpt2", "prune-heads{ratio=0.25}")
    assert stats["groups_in_scope"] == 2 and "rounding" in stats
    for block in pruned.transformer.h:
        assert block.attn.num_heads == 3 and block.attn.split_size == 24
    case, pruned, stats = _prune(zoo, "qwen3", "prune-heads{ratio=0.5}")
    for layer in layer_widths(pruned):
        assert layer["num_attention_heads"] == 2 * layer["num_key_value_heads"]  # 4 q / 2 kv ratio kept
    assert pruned.config.num_key_value_heads == 1 and pruned.config.num_attention_heads == 2


def test_taylor_uses_calibration_and_differs_from_l2(zoo):
    calibration = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(5))
    _, taylor, stats = _prune(zoo, "llama", "prune-channels{ratio=0.3,importance=taylor}", calibration=calibration)
    _, l2, _ = _prune(zoo, "llama", "prune-channels{ratio=0.3,importance=l2}")
    assert stats["achieved_ratio"] > 0.27
    assert taylor.model.layers[0].mlp.up_proj.weight.shape == l2.model.layers[0].mlp.up_proj.weight.shape
    assert not torch.equal(taylor.model.layers[0].mlp.up_proj.weight, l2.model.layers[0].mlp.up_proj.weight)
    with pytest.raises(PassError, match="calibration"):
        _prune(zoo, "llama", "prune-channels{ratio=0.3,importance=taylor}")


def test_uniform_widths_reload_with_from_pretrained_and_generate(zoo, tmp_path):
    case, pruned, _ = _prune(zoo, "llama_tied", "prune-channels{ratio=0.3}")
    pruned.save_pretrained(tmp_path)
    reloaded = type(case.model).from_pretrained(tmp_path).eval()
    assert torch.allclose(zoo.call(reloaded, case)[0], zoo.call(pruned, case)[0], atol=1e-5)
    tokens = pruned.generate(case.inputs["input_ids"][:1], max_new_tokens=5, do_sample=False)
    assert tokens.shape[1] == 13


def test_non_uniform_widths_reload_with_load_pruned(zoo, tmp_path):
    case, pruned, _ = _prune(zoo, "llama", "prune-channels{ratio=0.3,scope=global}")
    widths = layer_widths(pruned)
    assert widths[0] != widths[1]  # global ranking gives layers different widths
    pruned.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path)
    assert type(reloaded) is type(case.model)
    assert torch.allclose(zoo.call(reloaded, case)[0], zoo.call(pruned, case)[0], atol=1e-5)
