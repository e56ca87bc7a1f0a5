"""What the launch code needs to know about a GPU, asked once per device.

The kernel launches consult the multiprocessor count (split-K choices, the autotuner's cache key) and the
compute capability (Gluon and programmatic dependent launch need Hopper or later) on every call; the CUDA
property query behind them costs microseconds, so its answer is memoised here, in one place for all callers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["GpuFacts", "INTERPRETER_FACTS", "gpu_facts"]


class GpuFacts(NamedTuple):
    """Name, multiprocessor count and compute-capability major of one device."""

    name: str
    multiprocessors: int
    major: int


#: Stand-ins off the GPU (the CPU interpreter): a small, pre-Hopper device.
INTERPRETER_FACTS = GpuFacts("interpreter", 4, 0)
_memo: dict[int, GpuFacts] = {}


def gpu_facts(device: torch.device) -> GpuFacts:
    """The facts of ``device`` (a CUDA device; any other gets :data:`INTERPRETER_FACTS`), memoised per index."""
    if device.type != "cuda":
        return INTERPRETER_FACTS
    index = device.index if device.index is not None else torch.cuda.current_device()
    facts = _memo.get(index)
    if facts is None:
        props = torch.cuda.get_device_properties(index)
        facts = _memo[index] = GpuFacts(props.name, props.multi_processor_count, props.major)
    return facts
