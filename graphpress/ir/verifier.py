"""Structural checks of a graph, run by the pass manager after every pass.

A pass that leaves a value read before it is written, a node twice in the list, a dangling use record or
a graph output nobody computes is caught here, with the node named, before a backend turns it into a
broken model.
"""

from __future__ import annotations

from ..errors import VerificationError
from .graph import Graph

__all__ = ["verify"]


def verify(graph: Graph) -> None:
    """Raise :class:`VerificationError` naming the first broken invariant; return None when sound."""
    defined: set[int] = {id(v) for v in graph.inputs} | {id(v) for v in graph.constants}
    seen_nodes: set[int] = set()
    for node in graph.nodes:
        if id(node) in seen_nodes:
            raise VerificationError(f"{node.describe()} appears twice in the node list")
        seen_nodes.add(id(node))
        for index, value in enumerate(node.inputs):
            if value is None:
                continue
            if id(value) not in defined:
                where = "later in the list (the order is not topological, or there is a cycle)"
                if value.producer is None or value.producer.graph is not graph:
                    where = "nowhere in this graph (a dangling value)"
                raise VerificationError(
                    f"{node.describe()} reads %{value.name} as input {index}, which is defined {where}"
                )
            if (node, index) not in value.uses:
                raise VerificationError(f"%{value.name} does not record its use by {node.describe()}")
        for out in node.outputs:
            if id(out) in defined:
                raise VerificationError(f"%{out.name} is written twice (second time by {node.describe()})")
            if out.producer is not node:
                raise VerificationError(f"%{out.name} names the wrong producer (expected {node.describe()})")
            defined.add(id(out))
    for value in graph.outputs:
        if id(value) not in defined:
            raise VerificationError(f"graph output %{value.name} is computed by no node")
    for value in graph.constants:
        if value.param is None:
            raise VerificationError(f"constant %{value.name} carries no tensor")
