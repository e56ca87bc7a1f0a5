"""Lowering rule for ``aten.as_strided``: a view that reads its input's storage with strides of its own.

Longformer and LED cut overlapping attention chunks this way (``x.as_strided(size, stride)`` with half the
row stride), which no ONNX op expresses. The shapes are static, so which input element each output element
reads is a fixed table: the rule builds it from the input's own strides (as the trace recorded them) and
emits ``Gather(Reshape(x, [-1]), table)``. The coupling analysis sees an arbitrary gather over the flattened
tensor and keeps the channels through it whole.
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


def _extent(size: list[int], stride: list[int], offset: int) -> int:
    """One past the last storage position a view of ``size``/``stride`` at ``offset`` touches."""
    return offset + sum((s - 1) * st for s, st in zip(size, stride) if s > 0) + 1


def read_table(source: torch.Tensor, size: list[int], stride: list[int], offset: int) -> torch.Tensor | None:
    """For each element of ``source.as_strided(size, stride, offset)``, the flat (row-major) index of the
    ``source`` element it reads; None when it reads storage that no element of ``source`` holds."""
    extent = max(_extent(list(source.shape), list(source.stride()), source.storage_offset()),
                 _extent(size, stride, offset))
    positions = torch.arange(extent).as_strided(tuple(source.shape), source.stride(), source.storage_offset())
    owner = torch.full((extent,), -1, dtype=torch.int64)
    owner[positions.reshape(-1)] = torch.arange(positions.numel())
    table = owner[torch.arange(extent).as_strided(size, stride, offset)]
    return None if bool((table < 0).any()) else table


@lowers(aten.as_strided)
def as_strided(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    source = node.args[0].meta["val"]
    size, stride = [int(s) for s in node.args[1]], [int(s) for s in node.args[2]]
    offset = node.args[3] if len(node.args) > 3 else node.kwargs.get("storage_offset")
    offset = source.storage_offset() if offset is None else int(offset)
    if not all(isinstance(d, int) for d in (*source.shape, *source.stride())):
        raise UnsupportedOpError(f"{ctx.describe()}: as_strided of a tensor whose layout is known only at run time")
    table = read_table(source, size, stride, offset)
    if table is None:
        raise UnsupportedOpError(f"{ctx.describe()}: as_strided reads storage outside its input's elements (a view "
                                 f"of a larger tensor); make the input contiguous before as_strided")
    x: Value = ctx.env[node.args[0]]
    flat = ctx.emit("Reshape", [x, ctx.ints([-1], hint="shape")], shape=(int(source.numel()),), dtype=x.dtype)
    return ctx.emit("Gather", [flat, ctx.const(table, hint="strided_reads")], {"axis": 0}, shape=tuple(size),
                    dtype=x.dtype)
