"""SegFormer-style models: per-stage config lists (``num_attention_heads=[1, 2]``) survive the backend's
fix-ups, groups whose pruning breaks the model's own forward code are tied to the width it reads (``recover=``,
on by default) or, with ``recover=false``, refused with the submodule named."""

from __future__ import annotations

import pytest

import graphpress
from graphpress.errors import PassError
from graphpress.testing.arch_zoo import arch_case
from graphpress.testing.zoo_checks import call_case, onnx_matches, optimize_kwargs


@pytest.fixture(scope="module")
def segformer():
    return arch_case("segformer")


def test_per_stage_config_lists_are_left_as_lists(segformer) -> None:
    quantized = graphpress.optimize(segformer.model, "quantize{bits=8,group=0}", **optimize_kwargs(segformer))
    assert quantized.config.num_attention_heads == [1, 2]
    assert [o.shape for o in call_case(quantized, segformer)] == [o.shape for o in call_case(segformer.model,
                                                                                            segformer)]


def test_the_sequence_reduction_shrinks_with_the_residual_instead_of_freezing(segformer) -> None:
    # SegformerSequenceReduction reshapes its conv's output to the width of its input, a tie the traced graph
    # does not record: recover= finds the groups whose pruning breaks it and ties them channel for channel.
    pruned, report = graphpress.optimize(segformer.model, "prune-channels{ratio=0.3}", return_report=True,
                                         **optimize_kwargs(segformer))
    stats = report.records[-1].stats
    assert "frozen" not in stats and any("sequence_reduction" in tie and "channel group(s) of equal width" in tie
                                         for tie in stats["width_ties"])
    assert 0.27 <= stats["achieved_ratio"] <= 0.33
    reduction = pruned.get_submodule("stages.0.blocks.0.attention.sequence_reduction.sequence_reduction")
    assert reduction.in_channels == reduction.out_channels < segformer.model.config.hidden_sizes[0]
    assert [o.shape for o in call_case(pruned, segformer)] == [o.shape for o in call_case(segformer.model,
                                                                                        segformer)]
    assert onnx_matches(pruned, segformer) <= 1e-4


def test_without_recover_a_forward_that_breaks_after_pruning_is_named(segformer) -> None:
    with pytest.raises(PassError, match=r"stages\.0\.blocks\.0\.attention\.sequence_reduction "
                                        r"\(SegformerSequenceReduction\).*ignore="):
        graphpress.optimize(segformer.model, "prune-channels{ratio=0.3,recover=false}", **optimize_kwargs(segformer))
