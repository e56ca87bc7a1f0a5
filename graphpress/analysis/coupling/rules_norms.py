"""Coupling rules of normalization layers: the affine weights shrink with the channels they scale.

BatchNormalization and InstanceNormalization act per channel (axis 1); LayerNormalization over the
trailing axes from ``axis``. GroupNormalization computes statistics over groups of channels, so a group
is kept whole (its channels form one unit and ``num_groups`` is recomputed); RMSNorm reaches the IR
decomposed into elementwise ops and is covered by those rules.
"""

from __future__ import annotations

from ...ir import Node
from .rules import coupling_rule
from .state import CouplingState

__all__ = ["channel_norm", "layer_norm", "group_norm", "couple_norm_weights"]


def couple_norm_weights(state: CouplingState, node: Node, channel_ids, weights: list, axis_of: int) -> None:
    """Tie axis ``axis_of`` of each normalization weight (scale, shift, bias) to the normalized channels, or
    freeze it when the channels come from a tensor of fixed width (``channel_ids`` None)."""
    for value in weights:
        if value is None:
            continue
        labels = state.get(value)
        if not labels:
            continue
        ids = labels[axis_of]
        if ids is None:
            continue
        if channel_ids is None:
            state.freeze(ids, "normalized channels come from a tensor of fixed width", node)
        else:
            state.equate(channel_ids, ids)


@coupling_rule("BatchNormalization", "InstanceNormalization")
def channel_norm(state: CouplingState, node: Node) -> None:
    x = node.input(0)
    labels = state.get(x)
    channel = labels[1] if len(labels) > 1 else None
    couple_norm_weights(state, node, channel, list(node.inputs[1:]), 0)
    state.set(node.outputs[0], list(labels))
    for extra in node.outputs[1:]:  # training-mode running statistics
        state.set(extra, [channel] if len(extra.shape or ()) == 1 else [None] * len(extra.shape or ()))


@coupling_rule("LayerNormalization")
def layer_norm(state: CouplingState, node: Node) -> None:
    x = node.input(0)
    labels = state.get(x)
    rank = len(labels)
    axis = int(node.attrs.get("axis", -1)) % rank
    for value in node.inputs[1:3]:
        if value is None:
            continue
        w_labels = state.get(value)
        offset = rank - len(w_labels)
        for w_axis, ids in enumerate(w_labels):
            x_axis = w_axis + offset
            if ids is None:
                continue
            if x_axis < axis or labels[x_axis] is None:
                state.freeze(ids, "normalized axis of fixed width", node)
            else:
                state.equate(labels[x_axis], ids)
    state.set(node.outputs[0], list(labels))
    for extra in node.outputs[1:]:
        state.set(extra, [None] * len(extra.shape or ()))


@coupling_rule("GroupNormalization")
def group_norm(state: CouplingState, node: Node) -> None:
    """Statistics over groups of channels: keep each group whole, as grouped convolutions do."""
    x = node.input(0)
    labels = state.get(x)
    groups = int(node.attrs.get("num_groups", 1))
    channel = labels[1] if len(labels) > 1 else None
    if channel is not None:
        blocks = channel.reshape(groups, -1)
        state.equate(blocks, blocks[:, :1])
        state.remember(node, "num_groups", blocks[:, 0])
    for value in node.inputs[1:3]:
        w_labels = state.get(value) if value is not None else []
        ids = w_labels[0] if w_labels else None
        if ids is None:
            continue
        if channel is None:
            state.freeze(ids, "group norm over a fixed-width input", node)
        elif len(ids) == len(channel):
            state.equate(channel, ids)
        else:  # opset 18: scale per group
            state.equate(channel.reshape(groups, -1)[:, 0], ids)
    state.set(node.outputs[0], list(labels))
