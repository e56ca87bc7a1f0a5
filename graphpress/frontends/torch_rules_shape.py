"""Lowering rules for ops that move data without computing on it: views, permutes, slicing, concat, casts.

Each maps onto the ONNX op of the same meaning with its sizes as constant int64 inputs (opset 18 takes
axes, starts, ends and shapes as tensors). Shapes are static (taken from the exported program), so a
``view`` becomes a ``Reshape`` by the exact sizes torch used, which is what the coupling analysis
factorizes into head blocks. Ops that are pure aliases in a functional graph (``clone``, ``alias``,
``dropout`` in eval mode) produce no node: their output is their input.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.fx

from ..errors import UnsupportedOpError
from ..ir import SHAPED_LIKE, Value
from .torch_context import LoweringContext
from .torch_registry import lowers

__all__ = ["nonzero_rows"]  # the rules register themselves; nonzero_rows serves other rule modules too

aten = torch.ops.aten
_INT64_MAX = 2**63 - 1


def _dim(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


@lowers(operator.getitem)
def getitem(ctx: LoweringContext, node: torch.fx.Node) -> Any:
    return ctx.env[node.args[0]][node.args[1]]


@lowers(aten.clone, aten.alias, aten.detach, aten.lift_fresh_copy, aten.contiguous)
def passthrough(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return ctx.env[node.args[0]]


@lowers(aten.dropout)
def dropout(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    if a["train"] and a["p"] > 0:
        raise UnsupportedOpError(f"{ctx.describe()} is a training-mode dropout; call model.eval() before tracing")
    return a["input"]


@lowers(aten._to_copy, aten.to, aten.type_as)
def to_copy(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return ctx.cast(ctx.env[node.args[0]], ctx.out_meta().dtype)


@lowers(aten.view, aten.reshape, aten._unsafe_view)
def reshape(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x, sizes = ctx.env[node.args[0]], list(node.args[1])
    if not all(isinstance(s, int) for s in sizes):
        sizes = list(ctx.out_meta().shape)
    return ctx.emit("Reshape", [x, ctx.ints(sizes, hint="shape")])


@lowers(aten.permute)
def permute(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    return ctx.emit("Transpose", [x], {"perm": [_dim(d, len(x.shape)) for d in node.args[1]]})


@lowers(aten.transpose, aten.t)
def transpose(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    rank = len(x.shape)
    if rank < 2:
        return x
    a, b = (node.args[1], node.args[2]) if len(node.args) > 2 else (0, 1)
    perm = list(range(rank))
    perm[_dim(a, rank)], perm[_dim(b, rank)] = perm[_dim(b, rank)], perm[_dim(a, rank)]
    return ctx.emit("Transpose", [x], {"perm": perm})


@lowers(aten.expand)
def expand(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    # ONNX Expand broadcasts: a 1 keeps the input's size, which is what torch's -1 means.
    x, sizes = ctx.env[node.args[0]], list(node.args[1])
    return ctx.emit("Expand", [x, ctx.ints([1 if s == -1 else s for s in sizes], hint="shape")])


@lowers(aten.repeat)
def repeat(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    repeats = list(node.args[1])
    extra = len(repeats) - len(x.shape)
    if extra > 0:  # torch prepends unit dims to the input when repeats is longer
        x = ctx.reshape(x, (1,) * extra + tuple(x.shape))
    return ctx.emit("Tile", [x, ctx.ints(repeats)])


@lowers(aten.cat)
def cat(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    dtype = ctx.out_meta().dtype
    tensors = [ctx.cast(t, dtype) for t in ctx.bind(node)["tensors"] if t.shape != (0,)]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return ctx.emit("Concat", tensors, {"axis": _dim(dim, len(ctx.out_meta().shape))})


@lowers(aten.slice)
def slice_(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    x: Value = a["self"]
    dim = _dim(a["dim"], len(x.shape))
    size = x.shape[dim]
    start = a["start"] if a["start"] is not None else 0
    end = a["end"] if a["end"] is not None else _INT64_MAX
    if isinstance(size, int):
        end = min(end, size)
    if start == 0 and end == size and a["step"] == 1:
        return x
    inputs = [x, ctx.ints([start]), ctx.ints([end]), ctx.ints([dim]), ctx.ints([a["step"]])]
    return ctx.emit("Slice", inputs)


@lowers(aten.select)
def select(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x, dim, index = ctx.env[node.args[0]], node.args[1], node.args[2]
    scalar_index = ctx.const(torch.tensor(index, dtype=torch.int64), hint="index")
    return ctx.emit("Gather", [x, scalar_index], {"axis": _dim(dim, len(x.shape))})


@lowers(aten.unsqueeze)
def unsqueeze(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    return ctx.emit("Unsqueeze", [x, ctx.ints([_dim(node.args[1], len(x.shape) + 1)], hint="axes")])


@lowers(aten.squeeze)
def squeeze(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    rank = len(x.shape)
    dims = node.args[1] if len(node.args) > 1 else list(range(rank))
    dims = [dims] if isinstance(dims, int) else list(dims)
    axes = sorted({_dim(d, rank) for d in dims if x.shape[_dim(d, rank)] == 1})
    if not axes:  # torch ignores squeezing a dim that is not 1
        return x
    return ctx.emit("Squeeze", [x, ctx.ints(axes, hint="axes")])


@lowers(aten.split_with_sizes, aten.split)
def split(ctx: LoweringContext, node: torch.fx.Node) -> list[Value]:
    x: Value = ctx.env[node.args[0]]
    dim = _dim(node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0), len(x.shape))
    sizes = [int(t.shape[dim]) for t in ctx.out_meta()]
    return ctx.emit("Split", [x, ctx.ints(sizes, hint="split")], {"axis": dim}, n_outputs=len(sizes))


@lowers(aten.unbind)
def unbind(ctx: LoweringContext, node: torch.fx.Node) -> list[Value]:
    x: Value = ctx.env[node.args[0]]
    dim = _dim(node.args[1] if len(node.args) > 1 else 0, len(x.shape))
    count = x.shape[dim]
    piece_shape = tuple(1 if i == dim else s for i, s in enumerate(x.shape))
    pieces = ctx.emit("Split", [x, ctx.ints([1] * count, hint="split")], {"axis": dim}, n_outputs=count,
                      shape=piece_shape, dtype=x.dtype)
    pieces = pieces if isinstance(pieces, list) else [pieces]
    axes = ctx.ints([dim], hint="axes")
    return [ctx.emit("Squeeze", [p, axes], shape=ctx.out_meta(i).shape, dtype=x.dtype) for i, p in enumerate(pieces)]


@lowers(aten.index)
def index(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x[i0, i1, ...]`` with integer index tensors on consecutive dims: Gather for one, GatherND for several.

    torch broadcasts the index tensors to one shape B and puts B where the indexed dims were; GatherND
    does the same for leading dims, so the indexed block is moved to the front and B moved back after.
    """
    x: Value = ctx.env[node.args[0]]
    indices = [ctx.env[n] if n is not None else None for n in node.args[1]]
    used = [(dim, idx) for dim, idx in enumerate(indices) if idx is not None]
    if len(used) == 1 and used[0][1].dtype == torch.bool:
        indices = _mask_positions(ctx, indices, used[0][0])
        used = [(dim, idx) for dim, idx in enumerate(indices) if idx is not None]
    dims = [dim for dim, _ in used]
    if any(idx.dtype == torch.bool for _, idx in used):
        raise UnsupportedOpError(
            f"{ctx.describe()} indexes with a boolean mask (x[mask]): the result has as many rows as the mask has "
            f"True values, so its shape depends on the data, and graphpress graphs have static shapes. Give that "
            f"module a forward with static shapes while tracing "
            f"(@graphpress.frontends.torch_substitutions.register_trace_substitution), or select with "
            f"torch.where / masked_fill, which keep the shape")
    if dims != list(range(dims[0], dims[0] + len(dims))):
        raise UnsupportedOpError(
            f"{ctx.describe()}: non-adjacent advanced indexing; index with integer tensors on "
            f"neighbouring dimensions"
        )
    if len(used) == 1:
        return ctx.emit("Gather", [x, used[0][1]], {"axis": dims[0]})
    rank, first, count = len(x.shape), dims[0], len(dims)
    broadcast = tuple(torch.broadcast_shapes(*(tuple(idx.shape) for _, idx in used)))
    if first:  # move the indexed dims to the front
        perm = dims + [d for d in range(rank) if d not in dims]
        x = ctx.emit("Transpose", [x], {"perm": perm}, shape=tuple(x.shape[d] for d in perm), dtype=x.dtype)
    stacked = _stacked_indices(ctx, [idx for _, idx in used], broadcast)
    rest = tuple(x.shape[count:])
    if not first:
        return ctx.emit("GatherND", [x, stacked])
    gathered = ctx.emit("GatherND", [x, stacked], shape=broadcast + rest, dtype=x.dtype)
    nb = len(broadcast)  # [B..., rest_before..., rest_after...] -> [rest_before..., B..., rest_after...]
    perm = list(range(nb, nb + first)) + list(range(nb)) + list(range(nb + first, nb + len(rest)))
    return ctx.emit("Transpose", [gathered], {"perm": perm})


@lowers(aten.nonzero)
def nonzero(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x.nonzero()``: ``[count, rank]``, ONNX ``NonZero`` transposed. The count is the example's (static only in a
    graph traced with the example's values); ONNX finds the positions at run time."""
    x: Value = ctx.env[node.args[0]]
    count = ctx.out_meta().shape[0]
    return ctx.emit("Transpose", [_nonzero(ctx, x, count)], {"perm": [1, 0]}, shape=(count, len(x.shape)),
                    dtype=torch.int64)


def _mask_positions(ctx: LoweringContext, indices: list, at: int) -> list:
    """``x[mask]`` as ``x[i0, i1, ...]``: the mask (covering dims ``at..at+k-1``) becomes the k rows of its
    ``NonZero``. How many positions there are is the example's count (a graph reaches here only with static sizes,
    :mod:`.torch_example_values`); ONNX finds them from the mask at run time."""
    return list(indices[:at]) + nonzero_rows(ctx, indices[at], ctx.out_meta().shape[at]) + list(indices[at + 1:])


def _nonzero(ctx: LoweringContext, x: Value, count: int) -> Value:
    return ctx.emit("NonZero", [x], shape=(len(x.shape), count), dtype=torch.int64)


def nonzero_rows(ctx: LoweringContext, x: Value, count: int) -> list[Value]:
    """The positions of ``x``'s nonzero elements as one ``[count]`` index tensor per dim (``torch.where(x)``)."""
    found = _nonzero(ctx, x, count)
    return [ctx.emit("Gather", [found, ctx.const(torch.tensor(row), hint="row")], {"axis": 0}, shape=(count,),
                     dtype=torch.int64) for row in range(len(x.shape))]


@lowers(aten.gather)
def gather(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x, dim, idx = ctx.env[node.args[0]], node.args[1], ctx.env[node.args[2]]
    return ctx.emit("GatherElements", [x, idx], {"axis": _dim(dim, len(x.shape))})


@lowers(aten.scatter)
def scatter(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x.scatter(dim, index, src)`` (or a value) -> ScatterElements (Llama 4's router writes its top-k scores
    into a tensor of -inf this way)."""
    x, dim, idx, src = ctx.env[node.args[0]], node.args[1], ctx.env[node.args[2]], node.args[3]
    if node.kwargs.get("reduce") is not None:
        raise UnsupportedOpError(f"{ctx.describe()} with reduce={node.kwargs['reduce']!r}")
    updates = ctx.cast(ctx.env[src], x.dtype) if isinstance(src, torch.fx.Node) else \
        ctx.emit("Expand", [ctx.scalar(src, x.dtype), ctx.emit("Shape", [idx], shape=(len(idx.shape),),
                                                                  dtype=torch.int64)], like=idx, dtype=x.dtype)
    return ctx.emit("ScatterElements", [x, idx, updates], {"axis": _dim(dim, len(x.shape))})


def _row_mask(mask: Value, shape: tuple) -> Value | None:
    """``mask`` as one flag per row of the last axis when it is the same along that axis (its last size is 1,
    or it is an Expand of such a tensor: Hugging Face's ``(ids == image_id).unsqueeze(-1).expand_as(embeds)``);
    None otherwise."""
    if len(mask.shape) >= 1 and mask.shape[-1] == 1:
        return mask
    producer = mask.producer
    if producer is not None and producer.op == "Expand" and len(producer.inputs[0].shape) >= 1 \
            and producer.inputs[0].shape[-1] == 1 and tuple(mask.shape) == tuple(shape):
        return producer.inputs[0]
    return None


def _scatter_in_order(ctx: LoweringContext, x: Value, mask: Value, source: Value) -> Value:
    """``x`` whose k-th True position of ``mask`` (in x's element order; ``mask`` broadcast to x's shape) holds
    ``source``'s k-th element: ``Where(mask, Gather(source, CumSum(mask) - 1), x)``, static shapes. A mask that
    is the same along the last axis (one flag per row) gathers whole rows of ``source``, so x's last axis and
    source's stay one axis the coupling analysis can follow (the channels of token embeddings and of the image
    features a vision-language model puts among them)."""
    source = ctx.cast(source, x.dtype)
    shape = tuple(int(s) for s in x.shape)
    rows = _row_mask(mask, shape)
    width = shape[-1] if rows is not None and source.shape and int(source.shape[-1]) == shape[-1] else 1
    flags = rows if width > 1 else mask
    flags_shape = shape[:-1] + (1,) if width > 1 else shape
    count = math.prod(shape) // width
    available = math.prod(int(s) for s in source.shape) // width
    if count == 0 or available == 0:
        return x
    if tuple(flags.shape) != flags_shape:
        if len(flags.shape) < len(flags_shape):  # a mask over the leading axes: flags per row of the rest
            flags = ctx.reshape(flags, tuple(flags.shape) + (1,) * (len(flags_shape) - len(flags.shape)))
        flags = ctx.emit("Expand", [flags, ctx.ints(list(flags_shape), hint="shape")], shape=flags_shape,
                         dtype=flags.dtype)
    flags = ctx.cast(ctx.reshape(flags, (count,)), torch.bool)
    taken = ctx.emit("CumSum", [ctx.cast(flags, torch.int64), ctx.const(torch.tensor(0), hint="axis")],
                     shape=(count,), dtype=torch.int64)
    index = ctx.emit("Sub", [taken, ctx.scalar(1, torch.int64)], like=taken)
    index = ctx.emit("Max", [index, ctx.scalar(0, torch.int64)], like=taken)
    index = ctx.emit("Min", [index, ctx.scalar(available - 1, torch.int64)], like=taken)
    rows_of_source = ctx.reshape(source, (available, width))
    gathered = ctx.emit("Gather", [rows_of_source, index], {"axis": 0}, shape=(count, width), dtype=x.dtype)
    kept = ctx.reshape(x, (count, width))
    merged = ctx.emit("Where", [ctx.reshape(flags, (count, 1)), gathered, kept], like=kept)
    return ctx.reshape(merged, shape)


def _stacked_indices(ctx: LoweringContext, indices: list[Value], broadcast: tuple,
                     sizes: list[int] | None = None) -> Value:
    """Integer index tensors broadcast to ``broadcast`` and stacked on a new last axis, ``[*broadcast, k]``: the
    index form of GatherND and ScatterND. With ``sizes`` (the indexed axes'), negative indices count from the
    end, as torch's do (ScatterND's indices must be in range)."""
    columns = []
    for axis, index in enumerate(indices):
        index = ctx.cast(index, torch.int64)
        if sizes is not None:
            negative = ctx.emit("Less", [index, ctx.scalar(0, torch.int64)], like=index, dtype=torch.bool)
            wrapped = ctx.emit("Add", [index, ctx.scalar(sizes[axis], torch.int64)], like=index)
            index = ctx.emit("Where", [negative, wrapped, index], like=index)
        if tuple(index.shape) != broadcast:
            index = ctx.emit("Expand", [index, ctx.ints(list(broadcast), hint="shape")], shape=broadcast,
                             dtype=torch.int64)
        columns.append(ctx.reshape(index, broadcast + (1,)))
    if len(columns) == 1:
        return columns[0]
    return ctx.emit("Concat", columns, {"axis": len(broadcast)}, shape=broadcast + (len(columns),),
                    dtype=torch.int64)


@lowers(aten.masked_scatter)
def masked_scatter(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x.masked_scatter(mask, source)`` (vision-language models put their image features into the token
    embeddings this way)."""
    return _scatter_in_order(ctx, ctx.env[node.args[0]], ctx.env[node.args[1]], ctx.env[node.args[2]])


@lowers(aten.index_put)
def index_put(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x[indices] = values`` in functional form. One boolean index over x's leading axes writes ``values``
    row by row into the True positions, in order (Kosmos-2's ``embeds[mask] = image_embeds``); integer indices
    (no ``None`` among them) are a ScatterND (a sum with ``accumulate=True``)."""
    a = ctx.bind(node)
    x: Value = a["self"]
    indices, values, accumulate = list(a["indices"]), a["values"], bool(a["accumulate"])
    values = ctx.cast(values, x.dtype)
    if len(indices) == 1 and indices[0] is not None and indices[0].dtype == torch.bool and not accumulate:
        mask = indices[0]
        if len(mask.shape) < len(x.shape):  # flags of whole rows: trailing unit axes
            mask = ctx.reshape(mask, tuple(mask.shape) + (1,) * (len(x.shape) - len(mask.shape)))
        if math.prod(values.shape) > 1:
            return _scatter_in_order(ctx, x, mask, values)
        return ctx.emit("Where", [mask, ctx.reshape(values, ()) if values.shape else values, x], like=x)
    if any(i is None or i.dtype == torch.bool for i in indices):
        raise UnsupportedOpError(
            f"{ctx.describe()}: indices with None (a slice before an indexed axis) or several boolean masks; "
            f"graphpress lowers one boolean mask or integer indices over the leading axes")
    broadcast = tuple(torch.broadcast_shapes(*(tuple(i.shape) for i in indices)))
    stacked = _stacked_indices(ctx, indices, broadcast, sizes=[int(d) for d in x.shape[:len(indices)]])
    target = broadcast + tuple(int(s) for s in x.shape[len(indices):])
    if tuple(values.shape) != target:
        values = ctx.emit("Expand", [values, ctx.ints(list(target), hint="shape")], shape=target, dtype=x.dtype)
    attrs = {"reduction": "add"} if accumulate else {}
    return ctx.emit("ScatterND", [x, stacked, values], attrs, like=x)


@lowers(aten.copy)
def copy(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    # Functional ``x.copy_(src)`` (what slice assignment leaves after functionalization): src broadcast to x's
    # shape in x's dtype; x's values are not read.
    x, src = ctx.env[node.args[0]], ctx.env[node.args[1]]
    src = ctx.cast(src, x.dtype)
    if tuple(src.shape) == tuple(x.shape):
        return src
    return ctx.emit("Expand", [src, ctx.ints(list(x.shape), hint="shape")], like=x)


@lowers(aten.index_select)
def index_select(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    # x.index_select(dim, index) is Gather on that axis (Swin's relative-position bias table lookup).
    x, dim, idx = ctx.env[node.args[0]], node.args[1], ctx.env[node.args[2]]
    return ctx.emit("Gather", [x, ctx.cast(idx, torch.int64)], {"axis": _dim(dim, len(x.shape))})


@lowers(aten.slice_scatter)
def slice_scatter(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x[..., start:end:step, ...] = src`` in functional form. A unit step is the slices of ``x`` around the
    window concatenated with ``src`` (ops the coupling analysis follows channel by channel); other steps write
    ``src`` with ScatterElements at the window's positions."""
    a = ctx.bind(node)
    x, src = a["self"], ctx.cast(a["src"], a["self"].dtype)
    dim = _dim(a["dim"], len(x.shape))
    size = int(x.shape[dim])
    start = 0 if a["start"] is None else min(a["start"] + size if a["start"] < 0 else a["start"], size)
    end = size if a["end"] is None else min(a["end"] + size if a["end"] < 0 else a["end"], size)
    step = int(a["step"])
    if step == 1:
        before = [ctx.slice_axis(x, dim, 0, start)] if start > 0 else []
        after = [ctx.slice_axis(x, dim, end, size)] if end < size else []
        parts = before + [src] + after
        return parts[0] if len(parts) == 1 else ctx.emit("Concat", parts, {"axis": dim}, like=x)
    positions = torch.arange(start, end, step, dtype=torch.int64)
    view = [1] * len(x.shape)
    view[dim] = len(positions)
    index = ctx.const(positions.reshape(view).expand(tuple(src.shape)).contiguous(), hint="positions")
    return ctx.emit("ScatterElements", [x, index, src], {"axis": dim}, like=x)


@lowers(aten.constant_pad_nd)
def constant_pad(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    x: Value = a["self"]
    rank, pad = len(x.shape), list(a["pad"])
    begins, ends = [0] * rank, [0] * rank
    for pair in range(len(pad) // 2):  # torch lists (begin, end) pairs from the last dim backwards
        begins[rank - 1 - pair], ends[rank - 1 - pair] = pad[2 * pair], pad[2 * pair + 1]
    return ctx.emit("Pad", [x, ctx.ints(begins + ends, hint="pads"), ctx.scalar(a["value"], x.dtype)])


_FILL_ARGUMENT = {aten.full_like: 1, aten.new_full: 2}
_FILL_VALUE = {aten.zeros_like: 0, aten.ones_like: 1, aten.new_zeros: 0, aten.new_ones: 1}


@lowers(aten.full_like, aten.zeros_like, aten.ones_like, aten.new_full, aten.new_zeros, aten.new_ones)
def filled_like(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """Only the input's (static) shape and dtype matter, so the result is a constant. For ``*_like`` it is marked
    as shaped like its input (``SHAPED_LIKE``): the model recomputes it at the input's size, so the coupling
    analysis gives it the input's channels (Conditional-DETR's decoder starts from ``zeros_like(queries)``)."""
    fake = ctx.out_meta()
    packet = node.target.overloadpacket
    fill = node.args[_FILL_ARGUMENT[packet]] if packet in _FILL_ARGUMENT else _FILL_VALUE[packet]
    value = ctx.const(torch.full(tuple(fake.shape), fill, dtype=fake.dtype), hint=node.name)
    source = ctx.env.get(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
    if packet in (aten.full_like, aten.zeros_like, aten.ones_like) and isinstance(source, Value) \
            and source.shape == value.shape:
        value.meta[SHAPED_LIKE] = source
    return value
