"""A readable text form of a graph, for `graphpress inspect`, error messages and crash reproducers."""

from __future__ import annotations

from .graph import Graph
from .node import Node

__all__ = ["format_graph", "format_node"]


def _attr(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"[{', '.join(map(str, value[:8]))}, ...]"
    return repr(value) if isinstance(value, str) else str(value)


def format_node(node: Node) -> str:
    outs = ", ".join(repr(v) for v in node.outputs)
    ins = ", ".join("_" if v is None else f"%{v.name}" for v in node.inputs)
    attrs = ", ".join(f"{k}={_attr(v)}" for k, v in sorted(node.attrs.items()))
    attrs = f" {{{attrs}}}" if attrs else ""
    scope = f"  # {node.scope}" if node.scope else ""
    return f"{outs} = {node.qualified_op}({ins}){attrs}{scope}"


def format_graph(graph: Graph, *, max_nodes: int | None = None, show_constants: bool = False) -> str:
    lines = [f"graph {graph.name} (origin={graph.origin}, opset={graph.opset}) ("]
    lines += [f"  input {v!r}" for v in graph.inputs]
    lines.append(") {")
    if show_constants:
        lines += [f"  const {v!r} = {v.param.key}" for v in graph.constants if v.param is not None]
    nodes = graph.nodes if max_nodes is None else graph.nodes[:max_nodes]
    lines += [f"  {format_node(n)}" for n in nodes]
    if max_nodes is not None and len(graph.nodes) > max_nodes:
        lines.append(f"  ... {len(graph.nodes) - max_nodes} more nodes")
    lines.append("  return " + ", ".join(repr(v) for v in graph.outputs))
    lines.append("}")
    return "\n".join(lines)
