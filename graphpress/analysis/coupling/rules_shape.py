"""Coupling rules of ops that move axes around: Reshape/Flatten, Transpose, (Un)Squeeze, Expand, Tile,
DepthToSpace/SpaceToDepth, and Shape (which reads sizes, not channels).

They create no new channels; they carry ids from input axes to output axes. Reshape-like ops go through
:func:`.reshape_blocks.reshape_labels`, which reads the sizes from the value shapes the frontend recorded,
so a reshape whose target is computed at run time is handled the same as a constant one.
"""

from __future__ import annotations

import numpy as np

from ...ir import Node
from .reshape_blocks import reshape_labels
from .rules import const_ints, coupling_rule, freeze_uncovered
from .state import CouplingState

__all__ = ["reshape", "transpose", "unsqueeze", "squeeze", "expand", "tile", "depth_to_space", "shape_of"]


@coupling_rule("Reshape", "Flatten")
def reshape(state: CouplingState, node: Node) -> None:
    x, out = node.input(0), node.outputs[0]
    if x.shape is None or out.shape is None:
        return freeze_uncovered(state, node)
    state.set(out, reshape_labels(state, node, x.shape, out.shape, state.get(x)))


@coupling_rule("Transpose")
def transpose(state: CouplingState, node: Node) -> None:
    labels = state.get(node.input(0))
    perm = node.attrs.get("perm") or list(reversed(range(len(labels))))
    state.set(node.outputs[0], [labels[p] for p in perm])


@coupling_rule("Unsqueeze", "Squeeze")
def unsqueeze(state: CouplingState, node: Node) -> None:
    """Only size-1 axes come and go, so the labeled axes keep their order."""
    x, out = node.input(0), node.outputs[0]
    src = [(ids, d) for ids, d in zip(state.get(x), x.shape) if d != 1]
    dst = [j for j, d in enumerate(out.shape) if d != 1]
    result = [None] * len(out.shape)
    if len(src) != len(dst):
        return freeze_uncovered(state, node)
    for (ids, _), j in zip(src, dst):
        result[j] = ids
    state.set(out, result)


squeeze = unsqueeze


@coupling_rule("Expand")
def expand(state: CouplingState, node: Node) -> None:
    """Broadcast axes (size 1 -> n) carry copies, so no ids; axes that keep their size pass through."""
    x, out = node.input(0), node.outputs[0]
    labels = state.get(x)
    offset = len(out.shape) - len(labels)
    result = [None] * len(out.shape)
    for axis, ids in enumerate(labels):
        if ids is not None and out.shape[axis + offset] == x.shape[axis]:
            result[axis + offset] = ids
    state.set(out, result)


@coupling_rule("Tile")
def tile(state: CouplingState, node: Node) -> None:
    labels = state.get(node.input(0))
    repeats = const_ints(node, 1)
    if repeats is None:
        return freeze_uncovered(state, node)
    state.set(node.outputs[0], [None if ids is None else np.tile(ids, r) for ids, r in zip(labels, repeats)])


@coupling_rule("DepthToSpace", "SpaceToDepth")
def depth_to_space(state: CouplingState, node: Node) -> None:
    """PixelShuffle as ONNX writes it: each output channel owns a block of r*r input channels."""
    labels = list(state.get(node.input(0)))
    r2 = int(node.attrs.get("blocksize", 1)) ** 2
    channel = labels[1] if len(labels) > 1 else None
    result = [labels[0], None] + [None] * (len(labels) - 2)
    if channel is not None and node.op == "DepthToSpace":
        crd = node.attrs.get("mode", "DCR") == "CRD"
        grid = channel.reshape(-1, r2) if crd else channel.reshape(r2, -1).T
        state.equate(grid, grid[:, :1])
        result[1] = grid[:, 0]
    elif channel is not None:
        result[1] = np.tile(channel, r2)  # SpaceToDepth's output channel = block * C + c
    state.set(node.outputs[0], result)


@coupling_rule("Shape", "Size")
def shape_of(state: CouplingState, node: Node) -> None:
    """Reading a tensor's shape couples nothing: the sizes read at run time follow any pruning."""
    for out in node.outputs:
        state.set(out, [None] * len(out.shape or ()))
