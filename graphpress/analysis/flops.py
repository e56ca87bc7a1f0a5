"""Floating-point operation counts per node, from value shapes (symbolic dims count as 1: per-token FLOPs)."""

from __future__ import annotations

import math
from collections import defaultdict

from ..ir import Graph, Node, Value

__all__ = ["node_flops", "count_flops", "flops_by_scope"]


def _numel(value: Value | None) -> int:
    if value is None or value.shape is None:
        return 0
    return math.prod(d if isinstance(d, int) else 1 for d in value.shape)


def _dim(value: Value | None, axis: int) -> int:
    if value is None or value.shape is None or not value.shape:
        return 1
    d = value.shape[axis]
    return d if isinstance(d, int) else 1


def node_flops(node: Node) -> int:
    """Multiply-adds count as two FLOPs; only the ops that dominate cost are counted."""
    out = node.outputs[0] if node.outputs else None
    if node.op in ("Linear", "QLinear") and node.domain == "graphpress":
        return 2 * _numel(out) * _dim(node.input(0), -1)
    if node.op == "TritonMatMul" and node.domain == "graphpress":  # a gated one computes twice its output width
        return 2 * _numel(out) * _dim(node.input(0), -1) * (2 if node.attrs.get("glu") else 1)
    if node.op == "MatMul":
        return 2 * _numel(out) * _dim(node.input(0), -1)
    if node.op == "Gemm":
        k = _dim(node.input(0), 0 if node.attrs.get("transA") else -1)
        return 2 * _numel(out) * k
    if node.op in ("Conv", "ConvTranspose"):
        w = node.input(1)
        if w is None or w.shape is None:
            return 0
        per_out = math.prod(d if isinstance(d, int) else 1 for d in w.shape[1:])
        if node.op == "ConvTranspose":
            return 2 * _numel(node.input(0)) * _dim(w, 1) * math.prod(w.shape[2:])
        return 2 * _numel(out) * per_out
    if node.op == "Attention" and node.domain == "graphpress":
        q = node.input(0)
        k = node.input(1)
        return 4 * _numel(q) * _dim(k, -2)
    return 0


def count_flops(graph: Graph) -> int:
    return sum(node_flops(n) for n in graph.nodes)


def flops_by_scope(graph: Graph, depth: int | None = None) -> dict[str, int]:
    """FLOPs summed per module scope (truncated to ``depth`` dotted parts when given)."""
    totals: dict[str, int] = defaultdict(int)
    for node in graph.nodes:
        scope = node.scope or node.name
        if depth is not None:
            scope = ".".join(scope.split(".")[:depth])
        totals[scope] += node_flops(node)
    return dict(totals)
