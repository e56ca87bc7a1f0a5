"""Lowering rules for the ops that route tokens in mixture-of-experts layers: ``aten.topk`` (and ``aten.sort``,
a top-k of every element: ViT-MAE shuffles its patches by sorting random noise).

``torch.topk(x, k, dim, largest, sorted)`` becomes ONNX ``TopK(X, K)`` with two outputs, the values (dtype
of ``x``) and the int64 indices. ``K`` is an int64 tensor of one element, as ONNX wants it. The coupling
analysis then freezes the axis TopK picks from (:func:`graphpress.analysis.coupling.rules_reduce.topk`):
positions along it are *named* by the indices (the expert count of a router), so it can never shrink, and
the ``k`` axis of both outputs carries no channel ids.
"""

from __future__ import annotations

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
