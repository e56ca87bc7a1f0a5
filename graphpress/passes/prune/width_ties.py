"""Width ties: a channel group and head groups whose widths the model's code keeps equal, pruned by equal counts.

Why: attention code often reads one width as the other. timm's CaiT, XCiT, BEiT, DaViT and Swin-V2 reshape the
attention output with ``reshape(B, N, C)``, ``C`` read from the block's input, and split the fused projection
with ``C // num_heads``. The trace records both as constants, so the coupling analysis lets the residual
stream and each block's heads shrink apart, and ``recover=`` froze both. Pruning them is still possible when
each block keeps ``heads * head_dim == residual width``: both shrink together, by whole heads.

A tie is proposed for each frozen channel group ``R`` and the head groups sharing a square weight with it (a
weight whose two axes have the same size, ``R`` on one and the head group, covering it, on the other: the
attention's output projection). ``u`` positions per head on that axis make the rule: ``R`` loses ``u`` channels
per head a tied group loses, and every tied group loses as many heads. :func:`tied_keep` gives keep masks
that obey a tie for a head count (the planner picks the count that lands nearest its target); ``recover=`` tries
each tie with one trial run (module :mod:`.recover`) and keeps those whose model runs and computes what the pruned
graph does.

A tie may also carry followers: frozen channel groups of ``R``'s width sharing a square weight with it, which
lose exactly the channels ``R`` loses. Segformer's and PVT-v2's sequence-reduction convolution is one: the
forward reshapes its output with the input's channel count. Where no head group is tied (a single head), the
count is the number of channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...analysis.coupling import CouplingGroup, CouplingResult

__all__ = ["WidthTie", "propose_ties", "tied_keep", "tie_counts", "describe_tie"]


@dataclass(frozen=True)
class WidthTie:
    """``channels`` loses ``per_head`` channels for each unit every group of ``heads`` loses (all lose alike);
    each group of ``followers`` loses as many channels as ``channels`` does."""

    channels: int
    heads: tuple[int, ...]
    per_head: int
    followers: tuple[int, ...] = ()

    @property
    def groups(self) -> tuple[int, ...]:
        return (self.channels, *self.heads, *self.followers)


def _axes(group: CouplingGroup) -> dict[str, tuple[int, int]]:
    """Weight key -> (axis, positions on it) for each weight the group reaches."""
    return {m.key: (m.axis, len(m.unit_of)) for m in group.members if m.shape}


def _square_partners(result: CouplingResult, channels: int, candidates: list[int]) -> dict[int, int]:
    """Head groups among ``candidates`` sharing a square weight with ``channels``: group -> positions per unit."""
    group = result.groups[channels]
    shapes = {m.key: tuple(m.shape) for m in group.members if m.shape}
    mine = _axes(group)
    found: dict[int, int] = {}
    for gi in candidates:
        other = result.groups[gi]
        if gi == channels:
            continue
        for key, (axis, positions) in _axes(other).items():
            if key not in mine or mine[key][0] == axis:
                continue
            shape, my_axis = shapes[key], mine[key][0]
            # One position per channel on the square weight; elsewhere (a patch merge's concatenated input, say)
            # the channel group may span several.
            if shape[axis] == shape[my_axis] == positions == mine[key][1] == group.units \
                    and positions % other.units == 0:
                found[gi] = positions // other.units
                break
    return found


def propose_ties(result: CouplingResult, frozen: list[int], groups: list[int]) -> list[WidthTie]:
    """Ties for each frozen channel group (the widest first): with the head groups of one head count and one
    head width that share a square weight with it, one position per channel on that weight (see module doc),
    and with the frozen channel groups of its width that do as followers: all of them, then each alone, then
    none (GLPN's frozen q/k width is a stored head size, not the residual's: tied along, it fails the tie its
    sequence-reduction convolution needs)."""
    ties: list[WidthTie] = []
    for channels in sorted(frozen, key=lambda gi: -result.groups[gi].units):
        classes: dict[tuple[int, int], list[int]] = {}
        followers: list[int] = []
        for gi, per in _square_partners(result, channels, groups).items():
            if per > 1 and result.groups[gi].units > 1:
                classes.setdefault((per, result.groups[gi].units), []).append(gi)
            elif per == 1 and gi in frozen:  # a square linear between plain widths may well prune on its own
                followers.append(gi)
        if len(classes) > 1:
            continue  # heads of several counts or widths: no one rule removes whole heads from all of them
        (per, _), heads = next(iter(classes.items()), ((1, 0), []))
        options = [followers] + ([[gi] for gi in followers] if len(followers) > 1 else []) + ([[]] if heads else [])
        for chosen in options:
            tie = WidthTie(channels, tuple(sorted(heads)), per, tuple(sorted(chosen)))
            if (tie.heads or tie.followers) and not any(set(tie.groups) == set(t.groups) for t in ties):
                ties.append(tie)
    # Ties with heads first: a convolution's frozen output tied to a residual whose heads must shrink too
    # (PVT-v2) fails, and the tie led by that residual holds the convolution as a follower anyway.
    return sorted(ties, key=lambda tie: not tie.heads)


def tied_keep(result: CouplingResult, scores: dict[int, np.ndarray], tie: WidthTie, count: int,
              step: Callable[[CouplingGroup], int],
              removal: Callable[[CouplingGroup, np.ndarray, int], np.ndarray]) -> dict[int, np.ndarray] | None:
    """Keep masks for the tie's groups removing ``count`` heads from each head group and ``count * per_head``
    channels from the channel group and each follower, the least important ones; None where a group can't lose
    exactly that (its kept-count multiple ``step``, or what ``removal``, the planner's feasible mask, allows)."""
    channels = count * tie.per_head
    wanted = {tie.channels: channels, **{gi: count for gi in tie.heads}, **{gi: channels for gi in tie.followers}}
    masks = {}
    for gi, remove in wanted.items():
        group = result.groups[gi]
        kept = group.units - remove
        if kept <= 0 or kept % step(group):
            return None
        mask = removal(group, np.argsort(scores[gi], kind="stable"), remove)
        if int((~mask).sum()) != remove:
            return None
        masks[gi] = mask
    return masks


def tie_counts(result: CouplingResult, tie: WidthTie) -> range:
    """The counts a tie may remove: heads from each head group (all but one), or channels where it ties none."""
    return range(1, result.groups[tie.heads[0] if tie.heads else tie.channels].units)


def describe_tie(result: CouplingResult, tie: WidthTie) -> str:
    """One line for the report: the channel group and what it is tied to."""
    parts = [f"{len(tie.heads)} head group(s) ({tie.per_head} channels per head)"] if tie.heads else []
    parts += [f"{len(tie.followers)} channel group(s) of equal width"] if tie.followers else []
    return f"{result.groups[tie.channels].name()} tied to {' and '.join(parts)}"
