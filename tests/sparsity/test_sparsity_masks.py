"""Every mask realises its pattern exactly: N:M for several N:M, unstructured per row and per layer."""

import pytest
import torch

from graphpress.errors import OptionError
from graphpress.sparsity import keep_mask, parse_pattern, satisfies, sparsity_of, whole_weight_ratios


@pytest.mark.parametrize("text", ["2:4", "4:8", "1:4", "3:8", "5:16"])
def test_n_of_m_mask_keeps_exactly_n_in_every_run(text):
    pattern = parse_pattern(None, text)
    n, m = pattern.n_of_m
    scores = torch.randn(24, m * 10)
    keep = keep_mask(scores, pattern)
    assert (keep.reshape(24, 10, m).sum(-1) == n).all()
    assert satisfies(scores * keep, pattern)
    # the kept entries are the largest of their run
    runs, kept = scores.reshape(24, 10, m), keep.reshape(24, 10, m)
    assert (runs.masked_fill(~kept, float("inf")).amin(-1) >= runs.masked_fill(kept, -float("inf")).amax(-1)).all()


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.6, 0.93])
@pytest.mark.parametrize("per_row", [True, False])
def test_unstructured_mask_prunes_the_exact_count(ratio, per_row):
    pattern = parse_pattern(ratio, None)
    scores = torch.rand(16, 200)
    keep = keep_mask(scores, pattern, per_row=per_row)
    if per_row:
        assert ((~keep).sum(-1) == round(ratio * 200)).all()  # 200 columns: every row gets the same share
    else:
        assert int((~keep).sum()) == round(ratio * scores.numel())
    assert satisfies(scores * keep, pattern, per_row=per_row)
    assert sparsity_of(scores * keep) == pytest.approx(ratio, abs=0.003)


def test_satisfies_detects_a_broken_pattern():
    weight = torch.ones(4, 8)
    weight[:, ::2] = 0
    assert satisfies(weight, parse_pattern(None, "2:4"))
    weight[0, 0] = 1.0
    assert not satisfies(weight, parse_pattern(None, "2:4"))


@pytest.mark.parametrize("ratio,pattern", [(None, None), (0.5, "2:4"), (1.0, None), (0.0, None),
                                           (None, "4:2"), (None, "0:4"), (None, "2-4"), (None, "4:4")])
def test_bad_patterns_are_refused(ratio, pattern):
    with pytest.raises(OptionError):
        parse_pattern(ratio, pattern)


def test_n_of_m_needs_a_divisible_width():
    with pytest.raises(OptionError, match="multiple of 4"):
        keep_mask(torch.rand(3, 10), parse_pattern(None, "2:4"))


def test_per_row_mask_on_a_narrow_layer_spreads_the_layer_count_over_rows():
    # 8x8 at 10%: rounding each row (0.8 -> 1) would prune 8 weights (12.5%); the layer's count is 6.
    scores = torch.rand(8, 8)
    pruned = (~keep_mask(scores, parse_pattern(0.1, None), per_row=True)).sum(-1)
    assert int(pruned.sum()) == 6 and set(pruned.tolist()) <= {0, 1}
    # the rows that drop a weight are those whose lowest score is lowest
    assert set(pruned.nonzero().flatten().tolist()) == set(scores.min(-1).values.argsort()[:6].tolist())


def test_whole_weight_ratios_hit_the_overall_count():
    sizes = {"a": 64, "b": 64, "c": 48, "d": 24}
    ratios = whole_weight_ratios({name: 0.1 for name in sizes}, sizes)
    counts = {name: ratios[name] * sizes[name] for name in sizes}
    assert all(abs(c - round(c)) < 1e-9 for c in counts.values())
    assert round(sum(counts.values())) == round(0.1 * sum(sizes.values()))
    assert all(abs(ratios[name] - 0.1) * sizes[name] < 1 for name in sizes)
