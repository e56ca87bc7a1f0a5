"""PeakResidentMemory reports an allocation made inside it, with and without a resettable high-water mark."""

from __future__ import annotations

import numpy as np
import pytest

from graphpress.eval import memory
from graphpress.eval.memory import PeakResidentMemory


def _allocate_and_free(megabytes: int) -> None:
    block = np.ones(megabytes << 18, dtype=np.float32)  # touch every page so it is resident
    assert block.sum() > 0
    del block


def test_peak_sees_a_freed_allocation():
    with PeakResidentMemory() as peak:
        _allocate_and_free(64)
    assert peak.extra_bytes > 48 * 2**20


def test_sampler_is_used_when_the_high_water_mark_cannot_be_reset(monkeypatch: pytest.MonkeyPatch):
    real_field = memory._status_field
    # A kernel that ignores the reset: VmHWM stays far above the RSS.
    monkeypatch.setattr(memory, "_status_field",
                        lambda field: real_field(field) + (1 << 30) if field == "VmHWM" else real_field(field))
    with PeakResidentMemory(sample_seconds=0.0005) as peak:
        for _ in range(5):
            _allocate_and_free(64)
    assert not peak.reset_supported
    assert 16 * 2**20 < peak.extra_bytes < 512 * 2**20
