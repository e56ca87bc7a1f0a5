"""How channel ids travel through a reshape: match axes into blocks of equal size, then re-split.

``reshape_groups`` pairs input and output axes into blocks whose sizes multiply to the same number
(``[b, s, H*D] -> [b, s, H, D]`` gives ``(b)->(b)``, ``(s)->(s)``, ``(H*D)->(H, D)``); size-1 axes are
ignored and a symbolic dim must meet the same symbol. Inside a block the ids of the one labeled input axis
are broadcast over the block (merging ``[C, h, w] -> [C*h*w]`` repeats each channel id ``h*w`` times), then
reshaped to the output axes. An output axis along which the ids do not vary gets none (a copy axis); of the
axes along which they vary, the outermost keeps ids and the inner ones are made whole (their ids are
equated along the inner axes), so ``(H*D) -> (H, D)`` prunes whole heads and keeps ``head_dim``, a
PixelShuffle ``(C*r*r) -> (C, r, r)`` prunes whole output channels, and a channel shuffle's group
structure is preserved. This is general: no 2-D/4-D special cases.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...ir import Node, Value
from .rules import const_ints
from .state import CouplingState, Labels

__all__ = ["reshape_groups", "reshape_labels"]


def _leading_blocks(in_shape: Sequence, out_shape: Sequence, ins: list[int],
                    outs: list[int]) -> tuple[list[tuple[list[int], list[int]]], int, int]:
    """Blocks matched from the front of ``ins`` / ``outs`` (axis lists, either order) up to the first that
    cannot be: a symbolic dim meeting anything but itself.  Returns the blocks and how many axes they used."""
    blocks: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(ins) and j < len(outs):
        a, b = in_shape[ins[i]], out_shape[outs[j]]
        if isinstance(a, str) or isinstance(b, str):
            if a != b:
                break
            blocks.append(([ins[i]], [outs[j]]))
            i, j = i + 1, j + 1
            continue
        gi, gj, pa, pb, ii, jj = [ins[i]], [outs[j]], a, b, i + 1, j + 1
        while pa != pb:
            if pa < pb and ii < len(ins) and not isinstance(in_shape[ins[ii]], str):
                pa *= in_shape[ins[ii]]
                gi.append(ins[ii])
                ii += 1
            elif pb < pa and jj < len(outs) and not isinstance(out_shape[outs[jj]], str):
                pb *= out_shape[outs[jj]]
                gj.append(outs[jj])
                jj += 1
            else:
                break
        if pa != pb:
            break
        blocks.append((gi, gj))
        i, j = ii, jj
    return blocks, i, j


def reshape_groups(in_shape: Sequence, out_shape: Sequence) -> list[tuple[list[int], list[int]]] | None:
    """Blocks of (input axes, output axes) with equal element counts, or None when the shapes don't factor.

    Blocks are matched from the front, then from the back: since a reshape keeps the element count, a
    trailing block of equal size holds the same elements on both sides whatever the leading dims are, so
    ``[n, 64] -> [b, 12, 64]`` (tf2onnx's Dense on a sequence, ``n`` and ``b`` unrelated symbols) still
    passes its 64 channels through.  What lies between is one block of dims known only at run time.
    """
    ins = [i for i, d in enumerate(in_shape) if d != 1]
    outs = [j for j, d in enumerate(out_shape) if d != 1]
    head, i, j = _leading_blocks(in_shape, out_shape, ins, outs)
    if i == len(ins) and j == len(outs):
        return head
    back, bi, bj = _leading_blocks(in_shape, out_shape, ins[i:][::-1], outs[j:][::-1])
    tail = [(gi[::-1], gj[::-1]) for gi, gj in reversed(back)]
    rest_in, rest_out = ins[i:len(ins) - bi], outs[j:len(outs) - bj]
    if not rest_in and not rest_out:
        return head + tail
    if not rest_in or not rest_out:
        return None
    return head + [(rest_in, rest_out)] + tail


def _opaque(in_shape: Sequence, out_shape: Sequence, gi: list[int], gj: list[int]) -> bool:
    """A block whose element positions can't be followed: it has a run-time dim and is not one symbol kept."""
    dims = [in_shape[a] for a in gi] + [out_shape[b] for b in gj]
    return any(isinstance(d, str) for d in dims) and not (len(gi) == len(gj) == 1 and dims[0] == dims[1])


def _axis_after_squeeze(node: Node, shape: Sequence, axis: int) -> int | None:
    """Where ``axis`` of an (Un)Squeeze's input lies in its output; None when it is squeezed away or unknown."""
    axes = const_ints(node, 1, "axes")
    if node.op == "Unsqueeze":
        if axes is None:
            return None
        rank = len(shape) + len(axes)
        inserted = {a % rank for a in axes}
        return [k for k in range(rank) if k not in inserted][axis]
    removed = {a % len(shape) for a in axes} if axes is not None else {k for k, d in enumerate(shape) if d == 1}
    return None if axis in removed else axis - sum(1 for a in removed if a < axis)


def _picked_one_by_one(value: Value, axis: int, depth: int = 0) -> bool:
    """True when every use of ``value`` (through transposes and axes of size one added or removed) cuts
    ``axis`` into single positions: an unbind (Split into pieces of one), a select (Gather of a scalar index)
    or a Slice of one position."""
    consumers = value.consumers()
    if not consumers or depth > 6:
        return False
    for node in consumers:
        rank = len(value.shape or ())
        if node.op == "Transpose":
            perm = list(node.attrs.get("perm") or reversed(range(rank)))
            if not _picked_one_by_one(node.outputs[0], perm.index(axis), depth + 1):
                return False
        elif node.op in ("Squeeze", "Unsqueeze") and node.domain == "":
            moved = _axis_after_squeeze(node, value.shape or (), axis)
            if moved is None or not _picked_one_by_one(node.outputs[0], moved, depth + 1):
                return False
        elif node.op == "Split":
            if int(node.attrs.get("axis", 0)) % rank != axis or any(out.shape is None or out.shape[axis] != 1
                                                                     for out in node.outputs):
                return False
        elif node.op == "Gather":
            indices = node.input(1)
            if int(node.attrs.get("axis", 0)) % rank != axis or indices is None or indices.shape is None \
                    or len(indices.shape) != 0:
                return False
        elif node.op == "Slice":
            out = node.outputs[0]
            axes = const_ints(node, 3, "axes")
            if out.shape is None or out.shape[axis] != 1 or (axes is not None and [a % rank for a in axes] != [axis]):
                return False
        else:
            return False
    return True


def _constant_along(grid: np.ndarray, axis: int) -> bool:
    return bool(np.all(grid == np.take(grid, [0], axis=axis)))


def reshape_labels(state: CouplingState, node: Node, in_shape: Sequence, out_shape: Sequence,
                   labels: Labels) -> Labels:
    """Output labels of a reshape from ``in_shape`` to ``out_shape``; freezes what can't be followed."""
    out: Labels = [None] * len(out_shape)
    if not any(ids is not None for ids in labels):
        return out
    groups = reshape_groups(in_shape, out_shape)
    if groups is None:
        for ids in labels:
            state.freeze(ids, f"reshape {list(in_shape)} -> {list(out_shape)} does not factor into blocks", node)
        return out
    for gi, gj in groups:
        labeled = [k for k, axis in enumerate(gi) if labels[axis] is not None]
        if not labeled:
            continue
        if _opaque(in_shape, out_shape, gi, gj):
            for k in labeled:
                state.freeze(labels[gi[k]], f"reshape {list(in_shape)} -> {list(out_shape)} mixes channels with "
                             "dims known only at run time", node)
            continue
        if len(gi) == len(gj) == 1 and isinstance(in_shape[gi[0]], str):
            out[gj[0]] = labels[gi[0]]
            continue
        keep = labeled[0]
        for k in labeled[1:]:
            state.freeze(labels[gi[k]], "a second channel axis merged into one by a reshape", node)
        sizes = [int(in_shape[a]) for a in gi]
        view = [1] * len(gi)
        view[keep] = -1
        flat = np.broadcast_to(labels[gi[keep]].reshape(view), sizes).reshape(-1)
        out_sizes = [int(out_shape[b]) for b in gj]
        grid = flat.reshape(out_sizes)
        varying = [t for t in range(len(gj)) if not _constant_along(grid, t)]
        if not varying:
            continue
        # An axis the graph only ever cuts into single positions (q, k, v of a fused projection reshaped to
        # [..., 3, heads, head_dim] and unbound) enumerates tensors: the next varying axis carries the ids,
        # equal across the pieces, so whole heads can go from q, k and v together.
        kept = [t for t in varying if not _picked_one_by_one(node.outputs[0], gj[t])] if len(varying) > 1 else []
        lead = kept[0] if kept else varying[0]
        index = [0] * len(gj)
        index[lead] = slice(None)
        reps = grid[tuple(index)]
        if len(varying) > 1:
            shape = [1] * len(gj)
            shape[lead] = -1
            state.equate(grid, reps.reshape(shape))  # inner varying axes are kept whole
        out[gj[lead]] = reps
    return out


