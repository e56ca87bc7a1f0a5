"""Lowering rules for activations and softmax, in forms valid at ONNX opset 18.

``silu``, ``gelu`` and friends are kept whole by the decomposition table so that each becomes a short,
recognisable pattern instead of whatever torch's decomposition emits. Where opset 18 has the op
(``Relu``, ``HardSwish``, ``HardSigmoid``, ``LeakyRelu``, ``Elu``, ``Mish``, ``Softmax``) it is used
directly; ``Gelu`` only arrives in opset 20 and ``Swish`` in opset 24, so GELU is written with ``Erf``
(or ``Tanh`` for ``approximate="tanh"``) and SiLU as ``Mul(x, Sigmoid(x))``. All of these are
elementwise in the channel dimension, which is all the coupling analysis needs to know.
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


@lowers(aten.silu)
def silu(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x = ctx.env[node.args[0]]
    return ctx.emit("Mul", [x, ctx.emit("Sigmoid", [x], like=x)])


@lowers(aten.gelu)
def gelu(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    x: Value = a["self"]
    half, one = ctx.scalar(0.5, x.dtype), ctx.scalar(1.0, x.dtype)
    if a["approximate"] == "tanh":
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = ctx.emit("Mul", [ctx.emit("Mul", [x, x], like=x), x], like=x)
        inner = ctx.emit("Add", [x, ctx.emit("Mul", [cube, ctx.scalar(0.044715, x.dtype)], like=x)], like=x)
        scaled = ctx.emit("Mul", [inner, ctx.scalar(math.sqrt(2.0 / math.pi), x.dtype)], like=x)
        gate = ctx.emit("Tanh", [scaled], like=x)
    else:
        # 0.5 x (1 + erf(x / sqrt(2)))
        gate = ctx.emit("Erf", [ctx.emit("Mul", [x, ctx.scalar(1.0 / math.sqrt(2.0), x.dtype)], like=x)], like=x)
    shifted = ctx.emit("Add", [gate, one], like=x)
    return ctx.emit("Mul", [ctx.emit("Mul", [x, half], like=x), shifted])


@lowers(aten.relu)
def relu(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return ctx.emit("Relu", [ctx.env[node.args[0]]])


@lowers(aten.hardswish)
def hardswish(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return ctx.emit("HardSwish", [ctx.env[node.args[0]]])


@lowers(aten.hardsigmoid)
def hardsigmoid(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return ctx.emit("HardSigmoid", [ctx.env[node.args[0]]], {"alpha": 1.0 / 6.0, "beta": 0.5})


@lowers(aten.hardtanh, aten.relu6)
def hardtanh(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    x: Value = a["self"]
    low, high = a.get("min_val", 0.0), a.get("max_val", 6.0)
    return ctx.emit("Clip", [x, ctx.scalar(low, x.dtype), ctx.scalar(high, x.dtype)])


@lowers(aten.leaky_relu)
def leaky_relu(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    return ctx.emit("LeakyRelu", [a["self"]], {"alpha": float(a["negative_slope"])})


@lowers(aten.elu)
def elu(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    if a["scale"] != 1 or a["input_scale"] != 1:
        raise UnsupportedOpError(f"{ctx.describe()}: ELU with scale/input_scale (SELU-like) is not supported")
    return ctx.emit("Elu", [a["self"]], {"alpha": float(a["alpha"])})


@lowers(aten.mish)
def mish(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return ctx.emit("Mish", [ctx.env[node.args[0]]])


def _axis(dim: int, rank: int) -> int:
    return dim + rank if dim < 0 else dim


@lowers(aten.softmax, aten._softmax, aten.log_softmax, aten._log_softmax)
def softmax(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    out_dtype = ctx.out_meta().dtype
    x = ctx.cast(x, out_dtype)  # softmax(dtype=...) / half_to_float compute in the output dtype
    op = "LogSoftmax" if "log_softmax" in node.target.overloadpacket.__name__ else "Softmax"
    return ctx.emit(op, [x], {"axis": _axis(int(node.args[1]), len(x.shape))})
