"""Caching of analyses on the graph, and their invalidation after passes (MLIR's preserved-analyses idea)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..ir import Graph

__all__ = ["cached_analysis", "invalidate"]


def cached_analysis(graph: Graph, name: str, compute: Callable[[Graph], Any]) -> Any:
    """Return ``graph.analyses[name]``, computing it with ``compute(graph)`` the first time."""
    if name not in graph.analyses:
        graph.analyses[name] = compute(graph)
    return graph.analyses[name]


def invalidate(graph: Graph, preserved: Iterable[str] = ()) -> list[str]:
    """Drop every cached analysis not named in ``preserved`` ("*" keeps all); return the dropped names."""
    keep = set(preserved)
    if "*" in keep:
        return []
    dropped = [k for k in graph.analyses if k not in keep]
    for k in dropped:
        del graph.analyses[k]
    return dropped
