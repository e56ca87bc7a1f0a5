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

from ...ir import Node
from .state import CouplingState, Labels

__all__ = ["reshape_groups", "reshape_labels"]


def reshape_groups(in_shape: Sequence, out_shape: Sequence) -> list[tuple[list[int], list[int]]] | None:
    """Blocks of (input axes, output axes) with equal element counts, or None when the shapes don't factor."""
    ins = [i for i, d in enumerate(in_shape) if d != 1]
    outs = [j for j, d in enumerate(out_shape) if d != 1]
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(ins) and j < len(outs):
        a, b = in_shape[ins[i]], out_shape[outs[j]]
        gi, gj = [ins[i]], [outs[j]]
        i, j = i + 1, j + 1
        if isinstance(a, str) or isinstance(b, str):
            if a != b:
                return None
            groups.append((gi, gj))
            continue
        pa, pb = a, b
        while pa != pb:
            if pa < pb:
                if i >= len(ins) or isinstance(in_shape[ins[i]], str):
                    return None
                pa *= in_shape[ins[i]]
                gi.append(ins[i])
                i += 1
            else:
                if j >= len(outs) or isinstance(out_shape[outs[j]], str):
                    return None
                pb *= out_shape[outs[j]]
                gj.append(outs[j])
                j += 1
        groups.append((gi, gj))
    if i < len(ins) or j < len(outs):
        return None
    return groups


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
        lead = varying[0]
        index = [0] * len(gj)
        index[lead] = slice(None)
        reps = grid[tuple(index)]
        if len(varying) > 1:
            shape = [1] * len(gj)
            shape[lead] = -1
            state.equate(grid, reps.reshape(shape))  # inner varying axes are kept whole
        out[gj[lead]] = reps
    return out


