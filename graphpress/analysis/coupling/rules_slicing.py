"""Coupling rules of ops that cut or join ranges of an axis: Concat, Split, Slice, Pad.

Concat along a channel axis lays its inputs' ids side by side (DenseNet/Inception blocks: each branch's
channels keep their own group members, the consumer's weight sees all of them); Split and Slice hand
each output its range of ids (a torch Split into equal pieces, i.e. ``chunk``, keeps them equal). Positions of a fixed-width input joined by Concat get ids that are frozen.
After pruning, the backend recomputes Split sizes and Slice bounds from the kept positions.
"""

from __future__ import annotations

import numpy as np

from ...ir import Node
from .rules import const_ints, coupling_rule, freeze_uncovered
from .state import CouplingState

__all__ = ["concat", "split", "slice_", "pad"]


def _couple_other_axes(state: CouplingState, node: Node, values: list, skip: int, rank: int) -> list:
    out = [None] * rank
    for axis in range(rank):
        if axis == skip:
            continue
        found = [(state.get(v)[axis], v.shape[axis]) for v in values]
        labeled = [ids for ids, size in found if ids is not None]
        fixed = any(ids is None and size != 1 for ids, size in found)
        for other in labeled[1:]:
            state.equate(labeled[0], other)
        if labeled and fixed:
            state.freeze(labeled[0], f"channels meet a tensor of fixed size in {node.op}", node)
        elif labeled:
            out[axis] = labeled[0]
    return out


@coupling_rule("Concat")
def concat(state: CouplingState, node: Node) -> None:
    values = [v for v in node.inputs if v is not None]
    out_value = node.outputs[0]
    rank = len(out_value.shape)
    axis = int(node.attrs.get("axis", 0)) % rank
    out = _couple_other_axes(state, node, values, axis, rank)
    parts = [state.get(v)[axis] for v in values]
    if any(ids is not None for ids in parts):
        pieces = []
        for value, ids in zip(values, parts):
            if ids is None:
                ids = state.fresh(int(value.shape[axis]))
                state.freeze(ids, "a fixed-width input of Concat", node)
            pieces.append(ids)
        out[axis] = np.concatenate(pieces)
    state.set(out_value, out)


@coupling_rule("Split")
def split(state: CouplingState, node: Node) -> None:
    x = node.input(0)
    labels = state.get(x)
    axis = int(node.attrs.get("axis", 0)) % len(labels)
    sizes = [int(out.shape[axis]) for out in node.outputs]
    if labels[axis] is not None and getattr(node.graph, "origin", "") == "torch" and len(set(sizes)) == 1:
        # torch code usually splits with chunk(n) or split(size), which stay equal after pruning only if
        # every piece loses the same positions: couple the pieces position by position.
        chunks = labels[axis].reshape(len(sizes), -1)
        state.equate(chunks, chunks[:1])
    start = 0
    for out in node.outputs:
        size = int(out.shape[axis])
        result = list(labels)
        if labels[axis] is not None:
            result[axis] = labels[axis][start:start + size]
        start += size
        state.set(out, result)


@coupling_rule("Slice")
def slice_(state: CouplingState, node: Node) -> None:
    x, out = node.input(0), node.outputs[0]
    labels = list(state.get(x))
    starts, ends = const_ints(node, 1, "starts"), const_ints(node, 2, "ends")
    axes, steps = const_ints(node, 3, "axes"), const_ints(node, 4)
    computed = any(node.input(i) is not None and node.input(i).param is None for i in (3, 4))
    if starts is None or ends is None or computed:  # bounds or axes known only at run time
        return freeze_uncovered(state, node)
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(axes)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= len(labels)
        ids = labels[axis]
        if ids is None:
            continue
        if step != 1:
            state.freeze(ids, "strided slice of a channel axis", node)
            labels[axis] = None
            continue
        labels[axis] = ids[slice(*slice(start, end).indices(len(ids)))]
    state.set(out, labels)


@coupling_rule("Pad")
def pad(state: CouplingState, node: Node) -> None:
    labels = list(state.get(node.input(0)))
    pads = const_ints(node, 1, "pads")
    rank = len(labels)
    axes = const_ints(node, 3) or list(range(rank))
    if pads is None:
        return freeze_uncovered(state, node)
    n = len(axes)
    for k, axis in enumerate(axes):
        axis %= rank
        if labels[axis] is not None and (pads[k] or pads[k + n]):
            state.freeze(labels[axis], "padding along a channel axis", node)
            labels[axis] = None
    state.set(node.outputs[0], labels)
