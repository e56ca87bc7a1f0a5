"""Lowering rules for the ops that route tokens in mixture-of-experts layers: ``aten.topk`` (and ``aten.sort``,
a top-k of every element: ViT-MAE shuffles its patches by sorting random noise).

``torch.topk(x, k, dim, largest, sorted)`` becomes ONNX ``TopK(X, K)`` with two outputs, the values (dtype
of ``x``) and the int64 indices. ``K`` is an int64 tensor of one element, as ONNX wants it. The coupling
analysis then freezes the axis TopK picks from (:func:`graphpress.analysis.coupling.rules_reduce.topk`):
positions along it are *named* by the indices (the expert count of a router), so it can never shrink, and
the ``k`` axis of both outputs carries no channel ids.
"""

from __future__ import annotations

import math

import torch
import torch.fx

from ..errors import UnsupportedOpError
from ..ir import Value
from .torch_context import LoweringContext
from .torch_registry import lowers

__all__: list[str] = []  # rules register themselves; nothing here is called directly

aten = torch.ops.aten


@lowers(aten.topk)
def topk(ctx: LoweringContext, node: torch.fx.Node) -> list[Value]:
    a = ctx.bind(node)
    x: Value = a["self"]
    k = a["k"]
    if not isinstance(k, int):
        raise UnsupportedOpError(f"{ctx.describe()}: topk with a k computed at run time ({k!r})")
    rank = len(x.shape)
    axis = int(a["dim"]) % max(rank, 1)
    attrs = {"axis": axis, "largest": int(bool(a["largest"])), "sorted": int(bool(a["sorted"]))}
    values, indices = ctx.emit("TopK", [x, ctx.ints([k], hint="k")], attrs, n_outputs=2)
    return [values, indices]


@lowers(aten.sort.default, aten.sort.stable)
def sort(ctx: LoweringContext, node: torch.fx.Node) -> list[Value]:
    """``torch.sort`` as a ``TopK`` of the whole axis (ascending unless ``descending``)."""
    a = ctx.bind(node)
    x: Value = a["self"]
    axis = int(a["dim"]) % max(len(x.shape), 1)
    size = x.shape[axis]
    if not isinstance(size, int):
        raise UnsupportedOpError(f"{ctx.describe()}: sorting an axis whose size is known only at run time")
    attrs = {"axis": axis, "largest": int(bool(a["descending"])), "sorted": 1}
    values, indices = ctx.emit("TopK", [x, ctx.ints([size], hint="k")], attrs, n_outputs=2)
    return [values, indices]


@lowers(aten.repeat_interleave.Tensor)
def repeat_interleave_counts(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``repeat_interleave(counts)``: ``i`` written ``counts[i]`` times, the index that ``x.repeat_interleave(
    counts, dim)`` gathers with (Qwen2-VL's image lengths, token-to-expert maps)."""
    return _repeated_index(ctx, ctx.env[node.args[0]], ctx.out_meta().shape[0])


@lowers(aten.repeat_interleave.self_Tensor)
def repeat_interleave_by_counts(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x.repeat_interleave(counts, dim)``: a Gather along ``dim`` (``x`` flattened when ``dim`` is None)."""
    a = ctx.bind(node)
    x: Value = a["self"]
    if a.get("dim") is None:
        x = ctx.emit("Reshape", [x, ctx.ints([-1], hint="shape")], shape=(math.prod(x.shape),), dtype=x.dtype)
    axis = int(a.get("dim") or 0) % len(x.shape)
    index = _repeated_index(ctx, a["repeats"], ctx.out_meta().shape[axis])
    return ctx.emit("Gather", [x, index], {"axis": axis})


def _repeated_index(ctx: LoweringContext, counts: Value, length: int) -> Value:
    """Slot ``j`` of the output belongs to the item whose running total first exceeds ``j``, so its index is how
    many running totals are ``<= j``; ONNX computes that from the counts at run time. The length (the counts'
    sum) is the example's: a graph reaches here only with static sizes (:mod:`.torch_example_values`)."""
    counts = ctx.cast(counts, torch.int64)
    totals = ctx.emit("CumSum", [counts, ctx.const(torch.tensor(0), hint="axis")], like=counts)
    slots = ctx.const(torch.arange(length, dtype=torch.int64).reshape(-1, 1), hint="slots")
    row = ctx.emit("Unsqueeze", [totals, ctx.ints([0], hint="axes")], shape=(1, counts.shape[0]), dtype=torch.int64)
    passed = ctx.emit("LessOrEqual", [row, slots], shape=(length, counts.shape[0]), dtype=torch.bool)
    return ctx.emit("ReduceSum", [ctx.cast(passed, torch.int64), ctx.ints([1], hint="axes")], {"keepdims": 0},
                    shape=(length,), dtype=torch.int64)
