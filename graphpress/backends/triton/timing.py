"""Timing GPU work without CPU launch overhead and without a warm L2: CUDA-graph replay over rotating copies.

Weight-only kernels at batch 1 run for 3-50 us, less than what Python needs to launch them, so timing
eager calls measures the host.  Decoding runs them inside CUDA graphs; so does this: ``calls`` (one
closure per copy of the operands) are captured once into a graph, the graph is replayed, and the
median replay time is divided by the number of calls.  Passing enough copies that their bytes exceed
the L2 cache several times makes each call read its weights from device memory, as in a real model
where every layer's weights are different.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

__all__ = ["copies_to_defeat_l2", "graph_time_us"]

# Four times the H100's 50 MB L2: what a rotation must cover before an earlier copy is read again.
_ROTATION_BYTES = 200e6


def copies_to_defeat_l2(bytes_per_copy: int, minimum: int = 2, maximum: int = 64) -> int:
    """How many copies of an operand set to rotate through so that reruns do not hit in L2."""
    return max(minimum, min(maximum, math.ceil(_ROTATION_BYTES / max(bytes_per_copy, 1))))


def graph_time_us(calls: Sequence[Callable[[], object]], replays: int = 20) -> float:
    """Median microseconds per call of ``calls``, replayed as one CUDA graph (each call warmed up first)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for call in calls:  # compile, autotune-free warm-up and allocator warm-up happen outside capture
            call()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(calls))
    del graph
    return sorted(times)[len(times) // 2]
