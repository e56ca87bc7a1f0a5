"""Whether a configured pass reads calibration data follows its options (the CLI supplies default text then)."""

from __future__ import annotations

import pytest

from graphpress.passes import resolve_passes


@pytest.mark.parametrize("pipeline, expected", [
    ("dce", [False]),
    ("quantize{method=rtn}", [False]),
    ("quantize{method=gptq}", [True]),
    ("sparsify{ratio=0.5,method=magnitude}", [False]),
    ("sparsify{ratio=0.5,method=wanda}", [True]),
    ("prune-depth{layers=1}", [True]),
    ("dce,quantize{bits=4,method=awq}", [False, True]),
])
def test_uses_calibration_follows_options(pipeline: str, expected: list[bool]):
    assert [p.uses_calibration() for p in resolve_passes(pipeline)] == expected


def test_prune_channels_needs_calibration_only_for_data_driven_importance():
    assert not resolve_passes("prune-channels{importance=l2}")[0].uses_calibration()
    assert resolve_passes("prune-channels{importance=taylor}")[0].uses_calibration()
