"""Which axes of a side output (a value the model computes but no graph output reads) keep their size.

A side output (:data:`graphpress.ir.SIDE_OUTPUT`) is the end of a branch the eager forward runs and discards
at inference: UperNet's auxiliary head, whose logits feed only the training loss, or the final LayerNorm of
a DPT or Swin backbone whose result the task head does not read. Its nodes are in the graph so that its
weights shrink with the channels that flow into it, which keeps the eager forward runnable.

Its axes are not all free, though. An axis whose channels the rest of the model carries too (the hidden size
under DPT's discarded LayerNorm) changes with them: the live model's widths change anyway, and a discarded
value at the new width breaks nothing. An axis whose channels exist only in the discarded branch (the
auxiliary head's classes) is what the model returns in its other modes (the training loss reads those logits
against the labels), so it keeps its size, as a graph output's axes do.
"""

from __future__ import annotations

import numpy as np

from ...ir import SIDE_OUTPUT, Graph, Node
from .state import CouplingState

__all__ = ["side_outputs", "freeze_private_side_outputs"]


def side_outputs(graph: Graph) -> list:
    """The values of ``graph`` marked as side outputs, in node order."""
    return [out for node in graph.nodes for out in node.outputs if out.meta.get(SIDE_OUTPUT)]


def _live_nodes(graph: Graph) -> set[Node]:
    """The nodes some graph output depends on."""
    live: set[Node] = set()
    stack = [v.producer for v in graph.outputs if v.producer is not None]
    while stack:
        node = stack.pop()
        if node in live:
            continue
        live.add(node)
        stack.extend(v.producer for v in node.inputs if v is not None and v.producer is not None)
    return live


def freeze_private_side_outputs(graph: Graph, state: CouplingState, class_of_id: np.ndarray) -> None:
    """Freeze the channels of side outputs that no value on the way to a graph output carries (after the
    rules ran and equal ids were joined into ``class_of_id``)."""
    ends = side_outputs(graph)
    if not ends:
        return
    live_ids = [ids for node in _live_nodes(graph) for out in node.outputs
                for ids in state.labels.get(out, ()) if ids is not None]
    live = np.zeros(int(class_of_id.size and class_of_id.max()) + 1, dtype=bool)
    if live_ids:
        live[class_of_id[np.concatenate(live_ids)]] = True
    for value in ends:
        for ids in state.labels.get(value, ()):
            if ids is None:
                continue
            private = ids[~live[class_of_id[ids]]]
            state.freeze(private, f"channels only a discarded result of the model carries (%{value.name}, which "
                         f"no output reads): its other modes return it", value.producer)
