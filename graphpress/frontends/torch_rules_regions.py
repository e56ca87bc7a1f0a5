"""Lowering rules for the higher-order ops torch.export uses to mark regions of forward.

``torch.no_grad()`` and ``torch.autocast(enabled=False)`` blocks inside a model (Hugging Face's rotary
embedding has both) are exported, before decomposition, as ``wrap_with_set_grad_enabled`` /
``wrap_with_autocast`` calls on a sub-graph. For inference neither changes what is computed, so the
sub-graph is simply inlined. An autocast region that *enables* lower precision does change dtypes
implicitly; that one is refused here, which makes :func:`graphpress.frontends.torch_export.trace`
decompose the program (torch then writes the casts out) and lower it again.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from ..errors import UnsupportedOpError
from .torch_context import LoweringContext
from .torch_lowering import lower_nodes
from .torch_registry import lowers

__all__: list[str] = []  # rules register themselves; nothing here is called directly

_higher_order = torch.ops.higher_order


def _inline_body(ctx: LoweringContext, node: torch.fx.Node, body_index: int) -> list[Any]:
    """Lower the region's sub-graph in place, its placeholders bound to the call's operands."""
    body: torch.fx.GraphModule = ctx.env[node.args[body_index]]
    operands = [torch.fx.node.map_arg(a, lambda n: ctx.env[n]) for a in node.args[body_index + 1:]]
    placeholders = [n for n in body.graph.nodes if n.op == "placeholder"]
    for placeholder, operand in zip(placeholders, operands):
        ctx.env[placeholder] = operand
    outputs = lower_nodes(ctx, body.graph.nodes)
    ctx.node = node  # lower_nodes moved it into the body
    return outputs


@lowers(_higher_order.wrap_with_set_grad_enabled)
def set_grad_enabled_region(ctx: LoweringContext, node: torch.fx.Node) -> list[Any]:
    return _inline_body(ctx, node, 1)


@lowers(_higher_order.wrap_with_autocast)
def autocast_region(ctx: LoweringContext, node: torch.fx.Node) -> list[Any]:
    device_type, dtype, enabled = node.args[:3]
    if enabled:
        raise UnsupportedOpError(f"{ctx.describe()}: an autocast region to {dtype} on {device_type}")
    return _inline_body(ctx, node, 4)
