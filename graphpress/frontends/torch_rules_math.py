"""Lowering rules for elementwise arithmetic, comparisons, reductions and matrix products.

ONNX wants both operands of a binary op in one dtype, where torch promotes (``int64 + 0.5`` is float,
``x_fp16 * 2`` stays fp16). Each rule therefore casts its operands to the dtype torch computed for the
result (read from the aten node's ``meta["val"]``; comparisons use ``torch.result_type`` of the operands)
and turns Python scalars into 0-d constants of that dtype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from ..errors import UnsupportedOpError
from ..ir import Value
from .torch_context import LoweringContext, shape_of
from .torch_registry import lowers
from .torch_rules_shape import nonzero_rows

__all__: list[str] = []  # rules register themselves; nothing here is called directly

aten = torch.ops.aten

_UNARY = {
    aten.abs: "Abs", aten.neg: "Neg", aten.exp: "Exp", aten.log: "Log", aten.sqrt: "Sqrt", aten.sin: "Sin",
    aten.cos: "Cos", aten.tanh: "Tanh", aten.sigmoid: "Sigmoid", aten.erf: "Erf", aten.floor: "Floor",
    aten.ceil: "Ceil", aten.round: "Round", aten.sign: "Sign", aten.reciprocal: "Reciprocal",
    aten.logical_not: "Not", aten.bitwise_not: "Not", aten.isnan: "IsNaN", aten.tan: "Tan", aten.asin: "Asin",
    aten.acos: "Acos", aten.atan: "Atan", aten.sinh: "Sinh", aten.cosh: "Cosh", aten.asinh: "Asinh",
    aten.acosh: "Acosh", aten.atanh: "Atanh",
}
_ARITHMETIC = {aten.add: "Add", aten.sub: "Sub", aten.mul: "Mul", aten.div: "Div", aten.pow: "Pow",
               aten.maximum: "Max", aten.minimum: "Min"}
# torch's arithmetic of two booleans is logic: ``mask_a * mask_b`` (Mask2Former's valid sampling points) is And.
_BOOLEAN_ARITHMETIC = {aten.mul: "And", aten.add: "Or", aten.maximum: "Or", aten.minimum: "And"}
_COMPARISON = {aten.eq: "Equal", aten.ne: "Equal", aten.lt: "Less", aten.le: "LessOrEqual", aten.gt: "Greater",
               aten.ge: "GreaterOrEqual"}
_LOGICAL = {aten.bitwise_and: ("And", "BitwiseAnd"), aten.__and__: ("And", "BitwiseAnd"),
            aten.bitwise_or: ("Or", "BitwiseOr"), aten.__or__: ("Or", "BitwiseOr"), aten.logical_and: ("And", "And"),
            aten.logical_or: ("Or", "Or"),
            aten.bitwise_xor: ("Xor", "BitwiseXor"), aten.logical_xor: ("Xor", "Xor")}
_REDUCE = {aten.mean: "ReduceMean", aten.sum: "ReduceSum", aten.amax: "ReduceMax", aten.amin: "ReduceMin",
           aten.max.default: "ReduceMax", aten.min.default: "ReduceMin"}  # torch.max(x): every element


def _meta_or_number(node_arg: Any) -> Any:
    return node_arg.meta["val"] if isinstance(node_arg, torch.fx.Node) else node_arg


@lowers(*_UNARY)
def unary(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    op = _UNARY[node.target.overloadpacket]
    if op == "Not" and x.dtype != torch.bool:
        op = "BitwiseNot"
    return ctx.emit(op, [ctx.cast(x, ctx.out_meta().dtype) if op not in ("Not", "IsNaN") else x])


@lowers(aten.rsqrt)
def rsqrt(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x = ctx.cast(ctx.env[node.args[0]], ctx.out_meta().dtype)
    return ctx.emit("Reciprocal", [ctx.emit("Sqrt", [x], like=x)])


@lowers(aten.log1p, aten.expm1, aten.log2, aten.log10)
def log_exp_variant(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """log1p, expm1, log2, log10 from Log and Exp (ONNX has none of them; Mamba's state step uses log1p)."""
    dtype = ctx.out_meta().dtype
    x = ctx.cast(ctx.env[node.args[0]], dtype)
    packet = node.target.overloadpacket
    if packet is aten.log1p:
        return ctx.emit("Log", [ctx.emit("Add", [x, ctx.scalar(1.0, dtype)], like=x)])
    if packet is aten.expm1:
        return ctx.emit("Sub", [ctx.emit("Exp", [x], like=x), ctx.scalar(1.0, dtype)])
    base = 2.0 if packet is aten.log2 else 10.0
    return ctx.emit("Div", [ctx.emit("Log", [x], like=x), ctx.scalar(float(torch.tensor(base).log()), dtype)])


@lowers(aten.trunc)
def trunc(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return _truncate(ctx, ctx.cast(ctx.env[node.args[0]], ctx.out_meta().dtype))


@lowers(*_ARITHMETIC)
def arithmetic(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    packet = node.target.overloadpacket
    dtype = ctx.out_meta().dtype
    lhs, rhs = (torch.fx.node.map_arg(a, lambda n: ctx.env[n]) for a in node.args[:2])
    lhs, rhs = ctx.tensor(lhs, dtype), ctx.tensor(rhs, dtype)
    alpha = node.kwargs.get("alpha", 1)
    if alpha != 1:  # add/sub(x, y, alpha=a) = x +- a*y
        rhs = ctx.emit("Mul", [rhs, ctx.scalar(alpha, dtype)], like=rhs)
    rounding = node.kwargs.get("rounding_mode")
    if packet is aten.div and rounding is not None and dtype.is_floating_point:
        quotient = ctx.emit("Div", [lhs, rhs], shape=ctx.out_meta().shape, dtype=dtype)
        return ctx.emit("Floor", [quotient]) if rounding == "floor" else _truncate(ctx, quotient)
    if packet is aten.div and rounding == "floor":  # ONNX integer Div truncates; floor differs for negatives
        return _integer_floor_division(ctx, lhs, rhs)
    if dtype == torch.bool and packet in _BOOLEAN_ARITHMETIC:  # ONNX Mul/Add/Max/Min take no booleans
        return ctx.emit(_BOOLEAN_ARITHMETIC[packet], [lhs, rhs])
    return ctx.emit(_ARITHMETIC[packet], [lhs, rhs])


def _integer_floor_division(ctx: LoweringContext, lhs: Value, rhs: Value) -> Value:
    """``a // b`` of integers (Speech2Text's subsampled lengths): ONNX's integer Div truncates towards zero, so
    one less where the remainder is nonzero and its sign differs from the divisor's."""
    shape, dtype = ctx.out_meta().shape, ctx.out_meta().dtype
    quotient = ctx.emit("Div", [lhs, rhs], shape=shape, dtype=dtype)
    remainder = ctx.emit("Sub", [lhs, ctx.emit("Mul", [quotient, rhs], like=quotient)], like=quotient)
    zero = ctx.scalar(0, dtype)
    flags = dict(shape=shape, dtype=torch.bool)
    inexact = ctx.emit("Not", [ctx.emit("Equal", [remainder, zero], **flags)], **flags)
    signs_differ = ctx.emit("Xor", [ctx.emit("Less", [remainder, zero], **flags),
                                    ctx.emit("Less", [rhs, zero], shape=rhs.shape, dtype=torch.bool)], **flags)
    adjust = ctx.cast(ctx.emit("And", [inexact, signs_differ], **flags), dtype)
    return ctx.emit("Sub", [quotient, adjust], like=quotient)


def _truncate(ctx: LoweringContext, x: Value) -> Value:
    # trunc(x) = sign(x) * floor(|x|): opset 18 has no Trunc.
    floor_abs = ctx.emit("Floor", [ctx.emit("Abs", [x], like=x)], like=x)
    return ctx.emit("Mul", [ctx.emit("Sign", [x], like=x), floor_abs])


@lowers(*_COMPARISON)
def comparison(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    common = torch.result_type(*(_meta_or_number(a) for a in node.args[:2]))
    lhs, rhs = (ctx.tensor(torch.fx.node.map_arg(a, lambda n: ctx.env[n]), common) for a in node.args[:2])
    packet = node.target.overloadpacket
    if packet is aten.ne:
        equal = ctx.emit("Equal", [lhs, rhs], shape=ctx.out_meta().shape, dtype=torch.bool)
        return ctx.emit("Not", [equal])
    return ctx.emit(_COMPARISON[packet], [lhs, rhs])


@lowers(*_LOGICAL)
def logical(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    dtype = ctx.out_meta().dtype
    lhs, rhs = (ctx.tensor(torch.fx.node.map_arg(a, lambda n: ctx.env[n]), dtype) for a in node.args[:2])
    boolean_op, integer_op = _LOGICAL[node.target.overloadpacket]
    if dtype != torch.bool and boolean_op == integer_op:  # logical_* on numbers: compare with zero first
        raise UnsupportedOpError(f"{ctx.describe()} on non-boolean tensors; compare with 0 first")
    return ctx.emit(boolean_op if dtype == torch.bool else integer_op, [lhs, rhs])


@lowers(aten.where)
def where(ctx: LoweringContext, node: torch.fx.Node) -> Value | list[Value]:
    if len(node.args) == 1:  # torch.where(mask): the positions of its True values, one index tensor per dim
        return nonzero_rows(ctx, ctx.env[node.args[0]], ctx.out_meta()[0].shape[0])
    dtype = ctx.out_meta().dtype
    condition = ctx.env[node.args[0]]
    lhs, rhs = (ctx.tensor(torch.fx.node.map_arg(a, lambda n: ctx.env[n]), dtype) for a in node.args[1:3])
    if dtype == torch.bool:  # onnxruntime has no Where over booleans (SmolVLM's padding masks)
        chosen = ctx.emit("Where", [condition, ctx.cast(lhs, torch.uint8), ctx.cast(rhs, torch.uint8)],
                          dtype=torch.uint8)
        return ctx.cast(chosen, torch.bool)
    return ctx.emit("Where", [condition, lhs, rhs])


@lowers(aten.clamp, aten.clamp_min, aten.clamp_max)
def clamp(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    dtype = ctx.out_meta().dtype
    x = ctx.cast(ctx.env[node.args[0]], dtype)
    packet = node.target.overloadpacket
    if packet is aten.clamp:
        low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min")
        high = node.args[2] if len(node.args) > 2 else node.kwargs.get("max")
    else:
        low, high = (node.args[1], None) if packet is aten.clamp_min else (None, node.args[1])
    if isinstance(low, torch.fx.Node) or isinstance(high, torch.fx.Node):  # tensor bounds: elementwise Max/Min
        out = x
        for bound, op in ((low, "Max"), (high, "Min")):
            if bound is not None:
                out = ctx.emit(op, [out, ctx.tensor(ctx.env[bound] if isinstance(bound, torch.fx.Node) else bound,
                                                   dtype)], shape=ctx.out_meta().shape, dtype=dtype)
        return out
    bounds = [ctx.scalar(b, dtype) if b is not None else None for b in (low, high)]
    return ctx.emit("Clip", [x, *bounds])


def _reduce_axes(dims: Any, rank: int) -> list[int]:
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(rank))
    dims = [dims] if isinstance(dims, int) else list(dims)
    return sorted(d + rank if d < 0 else d for d in dims)


@lowers(*_REDUCE)
def reduce(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    x = ctx.cast(x, ctx.out_meta().dtype)  # mean(dtype=...) and sum of bools accumulate in the result dtype
    axes = ctx.ints(_reduce_axes(dims, len(x.shape)), hint="axes")
    op = _REDUCE.get(node.target) or _REDUCE[node.target.overloadpacket]
    return ctx.emit(op, [x, axes], {"keepdims": int(bool(keepdim))})


@lowers(aten.any, aten.all)
def any_all(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x.any(dim)`` / ``x.all(dim)`` (every overload: all elements, one dim, a list of dims): ReduceMax /
    ReduceMin of ``x != 0`` as int32 (ONNX reductions take no booleans), then back to bool (SmolVLM's "is this
    image all padding" test, Mllama's cross-attention row mask)."""
    a = ctx.bind(node)
    x: Value = a["self"]
    dims = a.get("dim")
    rank = len(x.shape)
    nonzero = x if x.dtype == torch.bool else ctx.emit("Not", [ctx.emit("Equal", [x, ctx.scalar(0, x.dtype)],
                                                                         like=x, dtype=torch.bool)], like=x,
                                                        dtype=torch.bool)
    keep = bool(a.get("keepdim", False))
    op = "ReduceMax" if node.target.overloadpacket is aten.any else "ReduceMin"
    reduced = ctx.emit(op, [ctx.cast(nonzero, torch.int32), ctx.ints(_reduce_axes(dims, rank), hint="axes")],
                       {"keepdims": int(keep)}, shape=shape_of(ctx.out_meta()), dtype=torch.int32)
    return ctx.cast(reduced, torch.bool)


@lowers(aten.linalg_vector_norm)
def vector_norm(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``torch.linalg.vector_norm`` / ``Tensor.norm(p, dim)`` (GRN, cosine attention, ``F.normalize``): ReduceL2
    and ReduceL1 for the usual orders, ReduceMax/ReduceMin of ``|x|`` for +-inf, ``(sum |x|^p)^(1/p)`` else."""
    a = ctx.bind(node)
    x = ctx.cast(a["self"], ctx.out_meta().dtype)  # dtype= accumulates in the result dtype
    order, keep = float(a["ord"]), {"keepdims": int(bool(a["keepdim"]))}
    axes = ctx.ints(_reduce_axes(a["dim"], len(x.shape)), hint="axes")
    if order in (1.0, 2.0):
        return ctx.emit("ReduceL2" if order == 2.0 else "ReduceL1", [x, axes], keep)
    magnitude = ctx.emit("Abs", [x], like=x)
    if order in (float("inf"), float("-inf")):
        return ctx.emit("ReduceMax" if order > 0 else "ReduceMin", [magnitude, axes], keep)
    if order == 0.0:
        raise UnsupportedOpError(f"{ctx.describe()}: the 0-norm (a count of nonzeros) has no ONNX reduction")
    powered = ctx.emit("Pow", [magnitude, ctx.scalar(order, x.dtype)], like=x)
    summed = ctx.emit("ReduceSum", [powered, axes], keep)
    return ctx.emit("Pow", [summed, ctx.scalar(1.0 / order, x.dtype)], like=summed)


@lowers(aten.var, aten.std, aten.var_mean, aten.std_mean)
def variance(ctx: LoweringContext, node: torch.fx.Node) -> Value | list[Value]:
    """``var``/``std`` (and their ``_mean`` pairs) as ``sum((x - mean)^2) / (n - correction)``: ONNX has no
    variance op, and writing it out keeps the reductions visible to the coupling analysis (a norm over
    heads, as xLSTM's multi-head LayerNorm does, couples nothing across the reduced axis)."""
    a = ctx.bind(node)
    packet = node.target.overloadpacket
    result_meta = ctx.out_meta(0 if packet in (aten.var_mean, aten.std_mean) else None)
    dtype = result_meta.dtype
    x = ctx.cast(a["self"], dtype)
    axes_list = _reduce_axes(a.get("dim"), len(x.shape))
    count = 1
    for axis in axes_list:
        if not isinstance(x.shape[axis], int):
            raise UnsupportedOpError(f"{ctx.describe()}: a variance over an axis of size known only at run time")
        count *= x.shape[axis]
    correction = a.get("correction")
    if correction is None:
        correction = 1 if a.get("unbiased", True) else 0
    keepdim = bool(a.get("keepdim", False))
    axes, keep = ctx.ints(axes_list, hint="axes"), {"keepdims": int(keepdim)}
    mean_kept = ctx.emit("ReduceMean", [x, axes], {"keepdims": 1},
                         shape=tuple(1 if i in axes_list else d for i, d in enumerate(x.shape)), dtype=dtype)
    centred = ctx.emit("Sub", [x, mean_kept], like=x)
    squares = ctx.emit("Mul", [centred, centred], like=x)
    summed = ctx.emit("ReduceSum", [squares, axes], keep, shape=shape_of(result_meta), dtype=dtype)
    divisor = max(count - float(correction), 0.0)  # torch gives inf/nan for n <= correction; so does 0 here
    spread = ctx.emit("Div", [summed, ctx.scalar(divisor, dtype)], like=summed)
    if packet in (aten.std, aten.std_mean):
        spread = ctx.emit("Sqrt", [spread], like=spread)
    if packet in (aten.var, aten.std):
        return spread
    return [spread, mean_kept if keepdim else ctx.emit("ReduceMean", [x, axes], keep, like=summed)]


@lowers(aten.argmax, aten.argmin)
def arg_reduce(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    if dim is None:  # over the flattened tensor
        x = ctx.emit("Reshape", [x, ctx.ints([-1])], shape=(int(torch.Size(x.shape).numel()),), dtype=x.dtype)
        dim = 0
    op = "ArgMax" if node.target.overloadpacket is aten.argmax else "ArgMin"
    return ctx.emit(op, [x], {"axis": dim + len(x.shape) if dim < 0 else dim, "keepdims": int(bool(keepdim))})


@lowers(aten.max.other, aten.min.other)
def elementwise_extreme(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``torch.max(a, b)`` / ``torch.min(a, b)``: ``torch.maximum``/``torch.minimum`` by another name."""
    dtype = ctx.out_meta().dtype
    a, b = (ctx.cast(ctx.env[arg], dtype) for arg in node.args[:2])
    return ctx.emit("Max" if node.target.overloadpacket is aten.max else "Min", [a, b])


@lowers(aten.max.dim, aten.min.dim)
def reduce_with_index(ctx: LoweringContext, node: torch.fx.Node) -> list[Value]:
    """``torch.max(x, dim)`` / ``torch.min(x, dim)``: the extreme values and where they are, as ONNX
    ``ReduceMax``/``ReduceMin`` beside ``ArgMax``/``ArgMin`` over the same axis (both pick the first of equal
    values, as torch does)."""
    a = ctx.bind(node)
    x: Value = a["self"]
    axis = int(a["dim"]) % max(len(x.shape), 1)
    keep = int(bool(a["keepdim"]))
    is_max = node.target.overloadpacket is aten.max
    values_meta, indices_meta = ctx.out_meta(0), ctx.out_meta(1)
    values = ctx.emit("ReduceMax" if is_max else "ReduceMin", [x, ctx.ints([axis], hint="axes")],
                      {"keepdims": keep}, shape=shape_of(values_meta), dtype=values_meta.dtype)
    indices = ctx.emit("ArgMax" if is_max else "ArgMin", [x], {"axis": axis, "keepdims": keep},
                       shape=shape_of(indices_meta), dtype=indices_meta.dtype)
    return [values, indices]


@lowers(aten.cummax, aten.cummin)
def cumulative_extreme(ctx: LoweringContext, node: torch.fx.Node) -> list[Value]:
    """``torch.cummax``/``cummin`` (values and indices; Grounding-DINO's spans between special tokens): ONNX has
    no such op, so a scan in log2(n) steps over the static length, each step comparing every position with the
    one ``2^k`` before it (padded with the identity). Ties take the later index, as torch does."""
    x: Value = ctx.env[node.args[0]]
    rank = len(x.shape)
    axis = int(node.args[1]) % max(rank, 1)
    length = int(x.shape[axis]) if rank else 1
    is_max = node.target.overloadpacket is aten.cummax
    shape, dtype = tuple(int(d) for d in x.shape), x.dtype
    view = [1] * rank
    view[axis] = length
    positions = ctx.const(torch.arange(length, dtype=torch.int64).reshape(view), hint="positions")
    values, indices = x, ctx.emit("Expand", [positions, ctx.ints(list(shape), hint="shape")], shape=shape,
                                  dtype=torch.int64)
    info = torch.finfo(dtype) if dtype.is_floating_point else torch.iinfo(dtype)
    identity = float("-inf") if dtype.is_floating_point and is_max else float("inf") if dtype.is_floating_point \
        else (info.min if is_max else info.max)
    step = 1
    while step < length:
        pad_shape = tuple(step if d == axis else n for d, n in enumerate(shape))
        pads = [ctx.emit("Expand", [ctx.scalar(fill, kind), ctx.ints(list(pad_shape), hint="shape")],
                         shape=pad_shape, dtype=kind) for fill, kind in ((identity, dtype), (0, torch.int64))]
        earlier = [ctx.emit("Concat", [pad, ctx.slice_axis(t, axis, 0, length - step)], {"axis": axis}, like=t)
                   for pad, t in zip(pads, (values, indices))]
        take = ctx.emit("GreaterOrEqual" if is_max else "LessOrEqual", [values, earlier[0]], shape=shape,
                        dtype=torch.bool)
        values = ctx.emit("Where", [take, values, earlier[0]], like=values)
        indices = ctx.emit("Where", [take, indices, earlier[1]], like=indices)
        step *= 2
    return [values, indices]


@lowers(aten.flip)
def flip(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``x.flip(dims)``: one Slice with step -1 on each flipped axis."""
    x: Value = ctx.env[node.args[0]]
    rank = len(x.shape)
    axes = sorted({int(d) % rank for d in node.args[1]})
    if not axes:
        return x
    count = len(axes)
    return ctx.emit("Slice", [x, ctx.ints([-1] * count), ctx.ints([-(2**63) + 1] * count), ctx.ints(axes),
                              ctx.ints([-1] * count)], like=x)


@lowers(aten.cumsum)
def cumsum(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x = ctx.cast(ctx.env[node.args[0]], ctx.out_meta().dtype)
    axis = ctx.const(torch.tensor(node.args[1], dtype=torch.int64), hint="axis")
    return ctx.emit("CumSum", [x, axis])
