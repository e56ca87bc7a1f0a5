"""A networkx view of a graph, for analyses that want graph algorithms (reachability, components)."""

from __future__ import annotations

import networkx as nx

from .graph import Graph

__all__ = ["to_networkx"]


def to_networkx(graph: Graph) -> nx.DiGraph:
    """Nodes become networkx nodes keyed by node name; an edge per value from producer to consumer."""
    g = nx.DiGraph()
    for node in graph.nodes:
        g.add_node(node.name, op=node.qualified_op, scope=node.scope, node=node)
    for node in graph.nodes:
        for value in node.inputs:
            if value is not None and value.producer is not None and value.producer.graph is graph:
                g.add_edge(value.producer.name, node.name, value=value.name)
    return g
