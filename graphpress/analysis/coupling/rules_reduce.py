"""Coupling rules of ops that reduce or pool: reductions, Softmax, pooling, Resize, GridSample, ArgMax, TopK,
CumSum.

Reducing over a channel axis (RMSNorm's mean of squares, a global pool) does not stop that axis from
shrinking: the statistic is recomputed over the channels that remain. Reduced axes simply carry no ids
afterwards. Pooling and resizing act on spatial axes and pass batch and channel ids through.
"""

from __future__ import annotations

from ...ir import Node
from .rules import const_ints, coupling_rule
from .state import CouplingState

__all__ = ["reduce", "passthrough_leading", "grid_sample", "same_shape", "topk"]

_REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin")


@coupling_rule(*_REDUCE_OPS)
def reduce(state: CouplingState, node: Node) -> None:
    labels = list(state.get(node.input(0)))
    rank = len(labels)
    if node.op in ("ArgMax", "ArgMin"):
        axes = [int(node.attrs.get("axis", 0))]
    else:
        axes = const_ints(node, 1, "axes")
        if axes is None and node.input(1) is not None:
            axes = list(range(rank))  # axes computed at run time: assume any may be reduced
        if not axes:
            axes = [] if int(node.attrs.get("noop_with_empty_axes", 0)) else list(range(rank))
    reduced = {a % rank for a in axes} if rank else set()
    keep = int(node.attrs.get("keepdims", 1))
    out = [None if a in reduced else ids for a, ids in enumerate(labels)]
    if not keep:
        out = [ids for a, ids in enumerate(out) if a not in reduced]
    state.set(node.outputs[0], out)


@coupling_rule("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
               "Resize", "Upsample", "MaxRoiPool")
def passthrough_leading(state: CouplingState, node: Node) -> None:
    """Batch and channel axes pass through; spatial axes change size and carry no ids.

    Spatial positions that do carry ids (a learned position-embedding grid reshaped to an image and resized,
    as DPT and ViT-style models do to fit another image size) keep their size: they are positions of a grid,
    not channels. A pooled output's size follows them, which the unlabeled output could not say, and forward
    code takes the grid's side from the number of positions (DPT's ``_resize_pos_embed`` reshapes to
    ``sqrt(len)`` squared), so a grid with rows removed no longer reshapes. Global pools are the exception:
    they reduce the positions, and a mean over the ones that remain is still a mean."""
    x = node.input(0)
    labels = list(state.get(x))
    if node.op not in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
        for axis in range(2, len(labels)):
            state.freeze(labels[axis], f"{node.op} resamples the positions of axis {axis}", node)
    for out in node.outputs:
        result = [None] * len(out.shape or ())
        for axis in range(min(2, len(result))):
            if out.shape[axis] == x.shape[axis]:
                result[axis] = labels[axis]
            else:
                state.freeze(labels[axis], f"{node.op} changes the size of axis {axis}", node)
        state.set(out, result)


@coupling_rule("GridSample")
def grid_sample(state: CouplingState, node: Node) -> None:
    """The sampled input's batch and channel axes pass through (a channel is sampled on its own); the grid's
    axes are sampling positions (its last is the x, y pair) and keep their sizes."""
    state.freeze_value(node.input(1), "sampling positions of GridSample", node)
    passthrough_leading(state, node)


@coupling_rule("Softmax", "LogSoftmax", "Hardmax", "CumSum", "LpNormalization", "MeanVarianceNormalization")
def same_shape(state: CouplingState, node: Node) -> None:
    state.set(node.outputs[0], list(state.get(node.input(0))))


@coupling_rule("TopK")
def topk(state: CouplingState, node: Node) -> None:
    labels = list(state.get(node.input(0)))
    axis = int(node.attrs.get("axis", -1)) % len(labels)
    state.freeze(labels[axis], "positions chosen by TopK", node)
    labels[axis] = None
    for out in node.outputs:
        state.set(out, labels)
