"""Lowering of ``torch.ops.graphpress.quant_matmul`` (a lowered ``TritonQuantLinear``) to ``graphpress::TritonMatMul``.

A model that went through ``lower-triton`` is re-traced by the pass manager (the swapped modules hold other
tensors than the graph was bound to), so its kernel calls need a node of their own.  The node is opaque on
purpose: its weight is in the kernels' layout (``backends/triton/layout.py``), not the packing.py format
of ``QLinear``, so no pass edits it and no exporter mistakes it for one; analyses count it as a weighted
layer (``analysis/layers.py``, ``analysis/flops.py``).  Without Triton the op does not exist and nothing
is registered (``TritonQuantLinear`` then runs plain torch ops, which trace as such).
"""

from __future__ import annotations

import torch
import torch.fx

from ..ir import GRAPHPRESS_DOMAIN, Value
from .torch_context import LoweringContext
from .torch_registry import lowers
from .torch_rules_quant import transient_weight

__all__: list[str] = []

try:
    from ..backends.triton import ops as _triton_ops  # noqa: F401  (defines torch.ops.graphpress.quant_matmul)
except ImportError:  # pragma: no cover - Triton not installed
    _triton_ops = None

if _triton_ops is not None:

    @lowers(torch.ops.graphpress.quant_matmul.default)
    def triton_matmul(ctx: LoweringContext, node: torch.fx.Node) -> Value:
        a = ctx.bind(node)
        inputs = [a["x"], a["packed"], a["scales"], a["offsets"]] + ([a["meta_pairs"]] if a["meta_pairs"] is not None else [])
        product_features = int(a["packed"].shape[1])
        attrs = {"bits": a["bits"], "group": a["group"], "in_features": a["in_features"],
                 "out_features": product_features // 2 if a["glu"] else product_features,
                 "product_features": product_features, "glu": int(a["glu"])}
        return ctx.emit("TritonMatMul", inputs, attrs, domain=GRAPHPRESS_DOMAIN)

    @lowers(torch.ops.graphpress.kernel_weight.default)
    def kernel_weight(ctx: LoweringContext, node: torch.fx.Node) -> Value:
        """``TritonQuantLinear.weight`` read for ``F.linear``: that product becomes the layer's TritonMatMul."""
        a = ctx.bind(node)
        features = int(a["packed"].shape[1])
        attrs = {"bits": a["bits"], "group": a["group"], "in_features": a["in_features"], "out_features": features,
                 "product_features": features, "glu": 0}
        return transient_weight(ctx, node, "TritonMatMul", [a["packed"], a["scales"], a["offsets"]], attrs,
                                takes_bias=False)
