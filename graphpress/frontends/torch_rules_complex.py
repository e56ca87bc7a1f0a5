"""Complex tensors, carried as real ones with a trailing axis of two (real, imaginary).

Rotary embeddings written with complex numbers (``torch.polar`` for the table, ``view_as_complex(x) * table``,
``view_as_real``: Llama 4, Meta's and Mistral's reference code) have no ONNX form, and graphpress's IR has no
complex dtype.  A complex aten value of shape ``S`` is lowered to a real value of shape ``S + (2,)``, so
``view_as_complex`` and ``view_as_real`` are free and each complex op becomes real arithmetic on the two
halves.  Only the ops such code uses have rules here; any other op meeting a complex tensor is refused by
name (:func:`complex_rule_for` returns None).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.fx

from ..ir import Value
from .torch_context import LoweringContext

__all__ = ["involves_complex", "complex_rule_for", "lowers_complex", "real_layout"]

aten = torch.ops.aten
_RULES: dict = {}


def lowers_complex(*targets) -> Callable:
    """Register the decorated function as the rule for each target when it reads or makes a complex tensor
    (its arguments and result in the real layout, :func:`real_layout`)."""
    def register(rule: Callable) -> Callable:
        for target in targets:
            _RULES[target] = rule
        return rule
    return register


def _is_complex(node) -> bool:
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return isinstance(val, torch.Tensor) and val.is_complex()


def involves_complex(node: torch.fx.Node) -> bool:
    """Whether the aten node reads or makes a complex tensor."""
    return _is_complex(node) or any(_is_complex(n) for n in node.all_input_nodes)


def complex_rule_for(target) -> Callable | None:
    rule = _RULES.get(target)
    if rule is None and isinstance(target, torch._ops.OpOverload):
        rule = _RULES.get(target.overloadpacket)
    return rule


def real_layout(meta: torch.Tensor) -> tuple[tuple, torch.dtype]:
    """Shape and dtype of the real value that carries the complex tensor ``meta``."""
    return (*meta.shape, 2), torch.empty((), dtype=meta.dtype).real.dtype


def _halves(ctx: LoweringContext, z: Value) -> tuple[Value, Value]:
    shape = z.shape[:-1]
    real, imaginary = ctx.emit("Split", [z, ctx.ints([1, 1], hint="split")], {"axis": -1}, n_outputs=2,
                               shape=(*shape, 1), dtype=z.dtype)
    axes = ctx.ints([-1], hint="axes")
    return (ctx.emit("Squeeze", [real, axes], shape=shape, dtype=z.dtype),
            ctx.emit("Squeeze", [imaginary, axes], shape=shape, dtype=z.dtype))


def _join(ctx: LoweringContext, real: Value, imaginary: Value) -> Value:
    axes = ctx.ints([-1], hint="axes")
    parts = [ctx.emit("Unsqueeze", [v, axes], shape=(*v.shape, 1), dtype=v.dtype) for v in (real, imaginary)]
    return ctx.emit("Concat", parts, {"axis": -1}, shape=(*real.shape, 2), dtype=real.dtype)


@lowers_complex(aten.polar)
def polar(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    magnitude, angle = ctx.env[node.args[0]], ctx.env[node.args[1]]
    real = ctx.emit("Mul", [magnitude, ctx.emit("Cos", [angle], like=angle)], like=angle)
    imaginary = ctx.emit("Mul", [magnitude, ctx.emit("Sin", [angle], like=angle)], like=angle)
    return _join(ctx, real, imaginary)


@lowers_complex(aten.view_as_complex, aten.view_as_real)
def reinterpret(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return ctx.env[node.args[0]]  # the real layout of a complex tensor is what these views show


@lowers_complex(aten.to, aten._to_copy, aten.clone, aten.alias, aten.contiguous)
def convert(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    z: Value = ctx.env[node.args[0]]
    if not _is_complex(node):
        raise NotImplementedError("a complex tensor converted to a real dtype (the imaginary part is dropped)")
    return ctx.cast(z, real_layout(node.meta["val"])[1])


@lowers_complex(aten.unsqueeze)
def unsqueeze(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    z: Value = ctx.env[node.args[0]]
    rank = len(z.shape) - 1  # the complex tensor's rank
    dim = node.args[1] % (rank + 1)
    shape, dtype = real_layout(node.meta["val"])
    return ctx.emit("Unsqueeze", [z, ctx.ints([dim], hint="axes")], shape=shape, dtype=dtype)


@lowers_complex(aten.mul)
def multiply(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    shape, dtype = real_layout(node.meta["val"])
    a, b = node.args[:2]
    if _is_complex(a) and _is_complex(b):  # (p + qi)(r + si) = (pr - qs) + (ps + qr)i
        (p, q), (r, s) = _halves(ctx, ctx.cast(ctx.env[a], dtype)), _halves(ctx, ctx.cast(ctx.env[b], dtype))
        mul = lambda x, y: ctx.emit("Mul", [x, y], shape=shape[:-1], dtype=dtype)  # noqa: E731
        return _join(ctx, ctx.emit("Sub", [mul(p, r), mul(q, s)], shape=shape[:-1], dtype=dtype),
                     ctx.emit("Add", [mul(p, s), mul(q, r)], shape=shape[:-1], dtype=dtype))
    z, factor = (a, b) if _is_complex(a) else (b, a)
    if isinstance(factor, torch.fx.Node):  # a real tensor scales both halves: broadcast it over the last axis
        real = ctx.cast(ctx.env[factor], dtype)
        factor_value = ctx.emit("Unsqueeze", [real, ctx.ints([-1], hint="axes")], shape=(*real.shape, 1), dtype=dtype)
    elif isinstance(factor, complex):
        raise NotImplementedError("a complex Python scalar")
    else:
        factor_value = ctx.scalar(float(factor), dtype)
    return ctx.emit("Mul", [ctx.cast(ctx.env[z], dtype), factor_value], shape=shape, dtype=dtype)
