"""A pass that fails on purpose, after damaging the model: what rollback and restore tests inject.

A failure that leaves the model untouched proves nothing about rollback; this one zeroes every weight of the
model it is given first, so a test (or ``benchmarks/optimize_memory.py``) can check that what comes back is the
model from before, not the damaged one.  It is not registered: pass an instance in the pipeline list.
"""

from __future__ import annotations

from ..passes.base import Pass, PassResult

__all__ = ["ZeroWeightsThenFail"]


class ZeroWeightsThenFail(Pass):
    """Zeroes every parameter of ``graph.module``, then raises ``RuntimeError``; ``seen`` records the modules
    it was handed (to check which object a pipeline edits)."""

    name = "test-zero-weights-then-fail"
    summary = "test only: zeroes every weight, then raises"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []

    def call(self, graph, ctx) -> PassResult:
        self.seen.append(graph.module)
        for param in graph.module.parameters():
            param.data.zero_()
        raise RuntimeError("injected failure after zeroing every weight")
