"""SegFormer-style models: per-stage config lists (``num_attention_heads=[1, 2]``) survive the backend's
fix-ups, and a pruned model whose own forward code breaks is refused with the submodule named."""

from __future__ import annotations

import pytest

import graphpress
from graphpress.errors import PassError
from graphpress.testing.arch_zoo import arch_case
from graphpress.testing.zoo_checks import call_case, optimize_kwargs


@pytest.fixture(scope="module")
def segformer():
    return arch_case("segformer")


def test_per_stage_config_lists_are_left_as_lists(segformer) -> None:
    quantized = graphpress.optimize(segformer.model, "quantize{bits=8,group=0}", **optimize_kwargs(segformer))
    assert quantized.config.num_attention_heads == [1, 2]
    assert [o.shape for o in call_case(quantized, segformer)] == [o.shape for o in call_case(segformer.model,
                                                                                            segformer)]


def test_a_forward_that_breaks_after_pruning_is_named(segformer) -> None:
    # SegformerSequenceReduction reshapes its conv's output to the width of its input, a tie the traced graph
    # does not record: the refusal names the module so the user can leave it out.
    with pytest.raises(PassError, match=r"stages\.0\.blocks\.0\.attention\.sequence_reduction "
                                        r"\(SegformerSequenceReduction\).*ignore="):
        graphpress.optimize(segformer.model, "prune-channels{ratio=0.3}", **optimize_kwargs(segformer))
