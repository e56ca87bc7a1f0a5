"""SegFormer-style models: per-stage config lists (``num_attention_heads=[1, 2]``) survive the backend's
fix-ups, and groups whose pruning breaks the model's own forward code are frozen (``recover=``, on by
default) or, with ``recover=false``, refused with the submodule named."""

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


def test_groups_that_break_the_sequence_reduction_are_frozen_and_the_rest_pruned(segformer) -> None:
    # SegformerSequenceReduction reshapes its conv's output to the width of its input, a tie the traced graph
    # does not record: recover= finds the groups whose pruning breaks it, leaves them whole, prunes the rest.
    pruned, report = graphpress.optimize(segformer.model, "prune-channels{ratio=0.3}", return_report=True,
                                         **optimize_kwargs(segformer))
    stats = report.records[-1].stats
    assert stats["frozen"] and all("frozen because pruning them broke stages.0.blocks.0.attention.sequence_reduction"
                                   in message for message in stats["frozen"])
    assert 0.27 <= stats["achieved_ratio"] <= 0.33
    assert [o.shape for o in call_case(pruned, segformer)] == [o.shape for o in call_case(segformer.model,
                                                                                        segformer)]
    assert onnx_matches(pruned, segformer) <= 1e-4


def test_without_recover_a_forward_that_breaks_after_pruning_is_named(segformer) -> None:
    with pytest.raises(PassError, match=r"stages\.0\.blocks\.0\.attention\.sequence_reduction "
                                        r"\(SegformerSequenceReduction\).*ignore="):
        graphpress.optimize(segformer.model, "prune-channels{ratio=0.3,recover=false}", **optimize_kwargs(segformer))
