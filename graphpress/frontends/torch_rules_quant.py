"""Lowering of a :class:`QuantizedLinear`'s ops to ``graphpress::QLinear``.

``torch.ops.graphpress.qlinear`` (the module called) is one QLinear. ``torch.ops.graphpress.dequantize_weight``
(its ``weight`` read by model code that then calls ``F.linear(x, layer.weight, layer.bias)`` itself, as
torchvision's Swin attention does) becomes a ``graphpress::DequantizeWeight`` node that only lives while the
graph is lowered: the ``aten.linear`` reading it becomes the same QLinear on the packed buffers, and the
node, left unread, is dropped. A dequantized weight read any other way has no IR form and is refused here.
A lowered ``TritonQuantLinear``'s ``weight`` (``torch.ops.graphpress.kernel_weight``, ``torch_rules_triton.py``)
takes the same route to its ``TritonMatMul``.
"""

from __future__ import annotations

import torch
import torch.fx

from ..errors import UnsupportedOpError
from ..ir import GRAPHPRESS_DOMAIN, Value
from ..quantization import torch_op  # noqa: F401  (defines torch.ops.graphpress.qlinear / dequantize_weight)
from .torch_context import LoweringContext
from .torch_registry import lowers

__all__ = ["product_of_dequantized", "transient_weight"]

_DEQUANTIZE = "DequantizeWeight"


def _qlinear_attrs(a: dict, act_bits: int) -> dict:
    return {"bits": a["bits"], "group": a["group"], "in_features": a["in_features"],
            "out_features": int(a["qweight"].shape[0]), "act_bits": act_bits}


@lowers(torch.ops.graphpress.qlinear.default)
def qlinear(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    inputs = [a["x"], a["qweight"], a["scales"], a["zeros"]] + ([a["bias"]] if a["bias"] is not None else [])
    return ctx.emit("QLinear", inputs, _qlinear_attrs(a, a["act_bits"]), domain=GRAPHPRESS_DOMAIN)


def _read_as_linear_weight(weight: torch.fx.Node, user: torch.fx.Node) -> bool:
    return (user.target is torch.ops.aten.linear.default and len(user.args) > 1 and user.args[1] is weight
            and weight not in (user.args[:1] + user.args[2:]))


def transient_weight(ctx: LoweringContext, node: torch.fx.Node, product: str, inputs: list[Value], attrs: dict,
                     *, takes_bias: bool) -> Value:
    """Lower a packed layer's dense weight, read by model code for ``F.linear``, to a node that only says which
    product (``product`` op on ``inputs`` with ``attrs``; ``takes_bias``: the bias is its last input) the
    ``aten.linear`` reading it becomes; any other reader has no IR form and is refused."""
    other = [user for user in node.users if not _read_as_linear_weight(node, user)]
    if other:
        raise UnsupportedOpError(
            f"{ctx.describe()}: a quantized linear's weight is read by {other[0].target}; graphpress lowers it only "
            "as the weight of F.linear (leave that linear in float: quantize{ignore=...})")
    return ctx.emit(_DEQUANTIZE, inputs, {**attrs, "product": product, "takes_bias": int(takes_bias)},
                    domain=GRAPHPRESS_DOMAIN)


@lowers(torch.ops.graphpress.dequantize_weight.default)
def dequantize_weight(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    return transient_weight(ctx, node, "QLinear", [a["qweight"], a["scales"], a["zeros"]], _qlinear_attrs(a, 0),
                            takes_bias=True)


def product_of_dequantized(ctx: LoweringContext, x: Value, weight: Value, bias: Value | None) -> Value | None:
    """``F.linear(x, layer.weight, bias)`` of a packed layer's dense weight as that layer's product on its packed
    buffers (weight-only: the layer's own forward is what quantizes activations), else None."""
    dequantized = weight.producer
    if dequantized is None or dequantized.op != _DEQUANTIZE or dequantized.domain != GRAPHPRESS_DOMAIN:
        return None
    attrs = dict(dequantized.attrs)
    product, takes_bias = attrs.pop("product"), attrs.pop("takes_bias")
    inputs = [x] + list(dequantized.inputs) + ([bias] if bias is not None and takes_bias else [])
    out = ctx.emit(product, inputs, attrs, domain=GRAPHPRESS_DOMAIN)
    return ctx.emit("Add", [out, bias]) if bias is not None and not takes_bias else out
