"""Lowering of ``torch.ops.graphpress.qlinear`` (a :class:`QuantizedLinear`) to ``graphpress::QLinear``."""

from __future__ import annotations

import torch
import torch.fx

from ..ir import GRAPHPRESS_DOMAIN, Value
from ..quantization import torch_op  # noqa: F401  (defines torch.ops.graphpress.qlinear)
from .torch_context import LoweringContext
from .torch_registry import lowers

__all__: list[str] = []


@lowers(torch.ops.graphpress.qlinear.default)
def qlinear(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    inputs = [a["x"], a["qweight"], a["scales"], a["zeros"]] + ([a["bias"]] if a["bias"] is not None else [])
    attrs = {"bits": a["bits"], "group": a["group"], "in_features": a["in_features"],
             "out_features": int(a["qweight"].shape[0]), "act_bits": a["act_bits"]}
    return ctx.emit("QLinear", inputs, attrs, domain=GRAPHPRESS_DOMAIN)
