"""Coupling rules of weighted layers: Linear, Conv, ConvTranspose, Gemm, MatMul and Gather (embeddings).

A layer's output channels are a new dimension owned by its weight (and bias); its input channels are
coupled with the activation that feeds them. A grouped convolution is pruned along whichever of its two
structures has more units. With many narrow groups (depthwise, ResNeXt's 32 x 4) whole groups go: a group's
input channels, its output channels and its weight rows shrink together and ``group`` is recomputed. With
few wide groups (AlexNet's 2, ShuffleNet v1's 3-8) every group loses the same positions: input channel ``j``
of all groups is one unit with the weight's input column ``j``, output channel ``j`` of all groups another,
so ``group`` stays and the groups stay equal (a channel shuffle's ``[g, C/g]`` reshape then shrinks its
``C/g``). A gathered embedding table passes its feature axis
on, so a tied LM head (the same table read by a Linear) lands in the same group as the residual stream.

A Linear's or convolution's weight may be computed in forward from stored tensors (weight_norm's
``g * v / ||v||``, spectral_norm's ``W / sigma``, an un-merged low-rank update ``w + B @ A``, BiT's weight
standardisation): the rules of the ops that compute it carry the stored tensors' ids onto its axes, so the
layer couples its channels with those tensors and pruning slices them; statistics over a pruned axis (a
row norm, sigma) are recomputed over the channels that remain. A computed weight whose ids were lost on the
way (an op without a rule, positions fixed by a mask) keeps every channel through the layer, and says so.
"""

from __future__ import annotations

import numpy as np

from ...ir import GRAPHPRESS_DOMAIN, Node, Value
from .rules import coupling_rule, freeze_uncovered
from .state import CouplingState

__all__ = ["linear", "conv", "matmul", "matmul_transposed", "gemm", "gather", "couple_input"]


def couple_input(state: CouplingState, node: Node, activation_ids, weight_ids,
                 computed: bool = False) -> None:
    """Input features of a weight follow the activation; an activation of fixed width freezes them.
    ``computed``: the weight is computed in forward, so an input axis without ids was lost on the way."""
    if weight_ids is None:
        if activation_ids is not None:
            why = "weight is computed by ops that don't keep its input features apart" if computed else \
                "weight has a single input feature"
            state.freeze(activation_ids, f"{node.qualified_op} {why}", node)
        return
    if activation_ids is None:
        state.freeze(weight_ids, "input features come from a tensor of fixed width", node)
    else:
        state.equate(activation_ids, weight_ids)


def _bias(state: CouplingState, node: Node, index: int, out_ids) -> None:
    bias = node.input(index)
    if bias is None:
        return
    labels = state.get(bias)
    if labels and labels[-1] is not None and out_ids is not None:
        state.equate(labels[-1], out_ids)
    elif labels and labels[-1] is not None:
        state.freeze(labels[-1], "bias of an output that can't shrink", node)


@coupling_rule("Linear", domain=GRAPHPRESS_DOMAIN)
def linear(state: CouplingState, node: Node) -> None:
    """y = x @ W.T + b, W [out, in] stored or computed in forward (weight_norm's ``g * v / ||v||``, an
    un-merged low-rank update ``w + B @ A``): W's axes carry the ids of the stored tensors it came from."""
    x, w = node.input(0), node.input(1)
    if not _weight_followed(state, node, w):
        return
    x_labels = state.get(x)
    w_labels = state.get(w)
    couple_input(state, node, x_labels[-1] if x_labels else None, w_labels[1], computed=w.param is None)
    _bias(state, node, 2, w_labels[0])
    out = node.outputs[0]
    state.set(out, list(x_labels[:-1]) + [w_labels[0]])


def _grouped(state: CouplingState, node: Node, in_ids, out_ids, groups: int, in_axis_of_w: int) -> np.ndarray:
    """Couple a grouped convolution by whole groups or by positions within the groups (more units wins)."""
    w = node.input(1)
    if in_ids is None:
        state.freeze(out_ids, "grouped convolution over a fixed-width input", node)
        return out_ids
    in_blocks = in_ids.reshape(groups, -1)
    out_blocks = out_ids.reshape(groups, -1)
    inner = state.get(w)[in_axis_of_w]
    if inner is not None and in_blocks.shape[1] > groups:
        # Position j of every group is one unit, on each side: the groups stay equal and `group` stays.
        state.equate(in_blocks, inner[None, :])
        state.equate(out_blocks, out_blocks[:1, :])
        return out_ids
    state.equate(in_blocks, in_blocks[:, :1])
    state.equate(out_blocks, in_blocks[:, :1])
    if inner is not None:
        state.freeze(inner, "channels within a convolution group", node)
    state.remember(node, "group", in_blocks[:, 0])
    return out_ids


def _weight_followed(state: CouplingState, node: Node, weight: Value | None) -> bool:
    """Whether a layer's weight axes are known units: a stored weight, or one computed from stored tensors by
    ops whose rules carried their channel ids (weight_norm's ``g * v / ||v||``, a low-rank update
    ``w + B @ A``, BiT's weight standardisation, a depthwise kernel reshaped from ``[C, k]`` as Mamba's causal
    conv does), so pruning slices those stored tensors. A computed weight whose ids were all lost (an op
    without a rule, positions picked by data) freezes every channel through the layer, naming the op that
    made it; with no weight at all the layer counts as uncovered."""
    if weight is None:
        freeze_uncovered(state, node)
        return False
    if weight.param is not None:
        return True
    labels = state.get(weight)
    if len(labels) >= 2 and (labels[0] is not None or labels[1] is not None):
        return True
    maker = weight.producer.qualified_op if weight.producer is not None else "an input"
    why = f"weight computed by {maker}, which does not keep its channels apart"
    state.uncovered[node.name] = f"{node.qualified_op} ({why})"
    state.freeze_all(node, f"{node.qualified_op} {why}")
    return False


@coupling_rule("Conv", "ConvTranspose")
def conv(state: CouplingState, node: Node) -> None:
    """Conv weight [out, in/g, k...]; ConvTranspose weight [in, out/g, k...]."""
    x, w = node.input(0), node.input(1)
    if len(x.shape or ()) < 2:
        return freeze_uncovered(state, node)
    if not _weight_followed(state, node, w):
        return
    transposed = node.op == "ConvTranspose"
    out_axis, in_axis = (1, 0) if transposed else (0, 1)
    groups = int(node.attrs.get("group", 1))
    x_labels = state.get(x)
    w_labels = state.get(w)
    for axis in range(2, len(w_labels)):
        state.freeze(w_labels[axis], "convolution kernel window", node)
    in_ids = x_labels[1]
    out_ids = w_labels[out_axis]
    if groups == 1:
        couple_input(state, node, in_ids, w_labels[in_axis], computed=w.param is None)
    elif transposed:
        # ConvTranspose: weight axis 0 is the input channels (all groups), axis 1 the outputs per group.
        if in_ids is None or w_labels[0] is None:
            state.freeze(w_labels[0], "grouped transposed convolution over a fixed-width input", node)
            out_ids = None
        else:
            state.equate(in_ids, w_labels[0])
            blocks = in_ids.reshape(groups, -1)
            state.equate(blocks, blocks[:, :1])
            state.freeze(w_labels[1], "channels within a convolution group", node)
            state.remember(node, "group", blocks[:, 0])
            per_group = node.outputs[0].shape[1] // groups
            out_ids = np.repeat(blocks[:, 0], per_group) if per_group > 0 else None
    else:
        out_ids = _grouped(state, node, in_ids, out_ids, groups, in_axis)
    _bias(state, node, 2, out_ids)
    out = node.outputs[0]
    state.set(out, [x_labels[0], out_ids] + [None] * (len(out.shape) - 2))


@coupling_rule("MatMul")
def matmul(state: CouplingState, node: Node) -> None:
    """[..., m, k] @ [..., k, n]: batch axes broadcast, k is contracted, m and n pass through."""
    matmul_transposed(state, node, False, False)


def matmul_transposed(state: CouplingState, node: Node, trans_a: bool, trans_b: bool) -> None:
    """The MatMul rule for operands whose last two axes are read swapped when ``trans_a``/``trans_b``
    (onnxruntime's FusedMatMul): the labels are swapped the same way, so a weight stored [n, k] is
    coupled on its axis 1."""
    a, b = node.input(0), node.input(1)
    ra, rb = len(a.shape or ()), len(b.shape or ())
    if ra < 2 or rb < 2:
        return freeze_uncovered(state, node)
    la, lb = state.get(a), state.get(b)
    la = list(la[:-2]) + list(reversed(la[-2:])) if trans_a else la
    lb = list(lb[:-2]) + list(reversed(lb[-2:])) if trans_b else lb
    couple_input(state, node, la[-1], lb[-2])
    out = node.outputs[0]
    rank = len(out.shape)
    batch = _batch_labels(state, node, a, b, la, lb, rank - 2)
    state.set(out, batch + [la[-2], lb[-1]])


def _batch_labels(state, node, a: Value, b: Value, la, lb, rank: int) -> list:
    out = [None] * rank
    for axis in range(rank):
        found = []
        for value, labels in ((a, la), (b, lb)):
            offset = axis - (rank - (len(value.shape) - 2))
            if offset >= 0 and value.shape[offset] != 1:
                found.append(labels[offset])
        labeled = [ids for ids in found if ids is not None]
        for other in labeled[1:]:
            state.equate(labeled[0], other)
        if labeled and len(labeled) < len(found):
            state.freeze(labeled[0], "batched matmul against a fixed tensor", node)
        elif labeled:
            out[axis] = labeled[0]
    return out


@coupling_rule("Gemm")
def gemm(state: CouplingState, node: Node) -> None:
    """A Gemm the frontend left alone (non-constant B): treat A's features like a MatMul's."""
    a, b = node.input(0), node.input(1)
    la, lb = state.get(a), state.get(b)
    ta, tb = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    k_a, m = (la[0], la[1]) if ta else (la[1], la[0])
    k_b, n = (lb[1], lb[0]) if tb else (lb[0], lb[1])
    couple_input(state, node, k_a, k_b)
    _bias(state, node, 2, n)
    state.set(node.outputs[0], [m, n])


@coupling_rule("Gather")
def gather(state: CouplingState, node: Node) -> None:
    """Gathered positions along ``axis`` can't shrink (the indices name them); other axes pass through."""
    data, indices = node.input(0), node.input(1)
    rank = len(data.shape or ())
    axis = int(node.attrs.get("axis", 0)) % max(rank, 1)
    labels = state.get(data)
    state.freeze(labels[axis] if labels else None, "positions picked by Gather indices", node)
    idx_rank = len(indices.shape or ())
    state.freeze_value(indices, "Gather indices", node)
    state.set(node.outputs[0], list(labels[:axis]) + [None] * idx_rank + list(labels[axis + 1:]))
