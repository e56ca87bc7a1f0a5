"""Per-layer facts for reports: widths, parameters, sparsity and bit width of every weighted layer."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..ir import GRAPHPRESS_DOMAIN, Graph, Node

__all__ = ["LayerInfo", "layer_summary"]

_WEIGHTED = {("", "Conv"), ("", "ConvTranspose"), ("", "Gemm"), ("", "MatMul"),
             (GRAPHPRESS_DOMAIN, "Linear"), (GRAPHPRESS_DOMAIN, "QLinear"), (GRAPHPRESS_DOMAIN, "TritonMatMul")}


@dataclass
class LayerInfo:
    scope: str
    op: str
    in_features: int
    out_features: int
    params: int
    sparsity: float
    bits: int

    def as_dict(self) -> dict:
        return asdict(self)


def _weight_facts(node: Node) -> tuple[int, int, int, float, int] | None:
    if node.op in ("QLinear", "TritonMatMul"):
        k = int(node.attrs.get("in_features", 0))
        n = int(node.attrs.get("product_features", node.attrs.get("out_features", 0)))
        return k, n, k * n, 0.0, int(node.attrs.get("bits", 4))
    weight = node.input(1)
    if weight is None or weight.param is None:
        return None
    shape = weight.param.shape
    if len(shape) < 2:
        return None
    out_axis, in_axis = (0, 1) if node.op in ("Linear", "Conv") else (1, 0)
    if node.op == "Gemm" and node.attrs.get("transB"):
        out_axis, in_axis = 0, 1
    data = weight.param.data
    sparsity = 0.0 if data.device.type == "meta" else float((data == 0).sum()) / max(1, data.numel())
    bits = torch.finfo(data.dtype).bits if data.dtype.is_floating_point else data.element_size() * 8
    return shape[in_axis], shape[out_axis], math.prod(shape), sparsity, bits


def layer_summary(graph: Graph) -> list[LayerInfo]:
    """One row per weighted layer (Linear, Conv, Gemm, MatMul by a constant, quantized Linear)."""
    rows = []
    for node in graph.nodes:
        if (node.domain, node.op) not in _WEIGHTED:
            continue
        facts = _weight_facts(node)
        if facts is None:
            continue
        k, n, params, sparsity, bits = facts
        rows.append(LayerInfo(node.scope or node.name, node.op, k, n, params, sparsity, bits))
    return rows
