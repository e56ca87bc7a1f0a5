"""Timing several onnxruntime sessions side by side on a small CPU, without them slowing each other.

Benchmarks compare a model with its compressed version in one run, so that both see the same machine
load. Alternating them run by run looks fair but is not: every session owns an intra-op thread pool
whose threads keep spinning for a while after each run, so on a 2-core machine each timed run shares the
cores with the other session's spinning threads. That doubled a dense ResNet-50's time (49 vs 26 ms) and
hid most of what pruning bought (1.65x read for 1.93x). Here the sessions take turns in blocks of runs,
and the first run after a switch is not timed (it absorbs the previous session's spinning tail).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

__all__ = ["median_ms_in_blocks"]


def median_ms_in_blocks(runs: Mapping[str, Callable[[], object]], count: int, block: int = 5,
                        warmup: int = 3) -> dict[str, float]:
    """Median milliseconds of each callable over ``count`` timed calls, taken in alternating blocks.

    ``runs`` maps a name to a call (e.g. ``lambda: session.run(None, feeds)``). Each callable is warmed up
    ``warmup`` times first; then the callables take turns, ``block`` timed calls each after one untimed call.
    """
    if count < 1 or block < 1:
        raise ValueError(f"count and block must be positive, got count={count}, block={block}")
    for call in runs.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(-(-count // block)):
        for name, call in runs.items():
            call()
            for _ in range(block):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}
