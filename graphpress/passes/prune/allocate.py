"""Turn a parameter ratio into a keep mask per coupling group.

``ratio`` is the fraction of the in-scope *parameters* removed (a weight is in scope when a group in scope
touches it), not a fraction of channels: removing a residual-stream channel shrinks two axes of some
weights and one axis of others, so the two differ. The planner searches the one number that sets how much
to prune (a per-group unit fraction for ``scope=local``, a prefix of the globally ranked units for
``scope=global``) by bisection on the exact parameter count, and always:

* never removes a frozen unit, never empties a group or any tensor axis a group reaches (``keep_one``);
* rounds each group's kept unit count to a multiple of ``round_to`` where the group is wide enough
  (at least ``8 * round_to`` units, so rounding never dominates a narrow layer; a narrower group rounds
  to the largest power-of-two divisor of ``round_to`` down to 8 that it is wide enough for);
* reports what it rounded (KV-head groups are coarse: 2 KV heads can only lose 0 or 1);
* refines a ``local`` plan step by step in single groups to land close to the target.

``scope=global`` ranks units of different groups against each other, so their scores must be made
comparable first (``standardize``): ``mean`` divides each group's scores by their mean (magnitudes of
layers of different scale); ``group`` z-scores each group on its own; ``kind`` z-scores all groups of one
kind together (every layer's attention-head group is one kind, every layer's MLP group another, told apart
by their members' names with the layer index removed). ``kind`` is FLAP's adaptive allocation: heads
and MLP channels compete in one budget while layers keep their relative importance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ...analysis.coupling import CouplingGroup, CouplingResult
from ...errors import InfeasibleRequestError, PassError
from .width_ties import WidthTie, tie_counts, tied_keep

__all__ = ["PruningPlan", "ParameterBudget", "plan_pruning", "per_cost", "standardize_scores", "STANDARDIZE_CHOICES"]

STANDARDIZE_CHOICES = ("mean", "group", "kind")
_CHANNEL_UNIT = 2  # positions per unit up to which a unit is one channel (fused gate/up rows), not a head
_LAYER_INDEX = re.compile(r"\.\d+(?=\.)")


@dataclass
class PruningPlan:
    keep: dict[int, np.ndarray]
    in_scope_params: int
    removed_params: int
    notes: list[str] = field(default_factory=list)

    @property
    def achieved_ratio(self) -> float:
        return self.removed_params / self.in_scope_params if self.in_scope_params else 0.0


class ParameterBudget:
    """Exact parameter counts of the weights in scope for any choice of kept units; with ``scale`` (a cost
    per element of a weight, e.g. its FLOPs per element) the weighted sum instead."""

    def __init__(self, result: CouplingResult, groups: list[int], scale: dict[str, float] | None = None):
        self.weights: dict[str, tuple[tuple[int, ...], list[tuple[int, int, np.ndarray]]]] = {}
        for gi in groups:
            group = result.groups[gi]
            for m in group.members:
                if _made_by_the_graph(m):
                    continue
                shape, axes = self.weights.setdefault(m.key, (m.shape, []))
                axes.append((m.axis, gi, np.bincount(m.unit_of, minlength=group.units)))
        self.scale = scale
        self.total = self._sum({k: shape for k, (shape, _) in self.weights.items()})

    def _sum(self, shapes: dict[str, tuple[int, ...] | list[int]]) -> int:
        if self.scale is None:
            return sum(int(np.prod(s)) for s in shapes.values())
        return int(round(sum(int(np.prod(s)) * self.scale.get(k, 0.0) for k, s in shapes.items())))

    def remaining(self, keep: dict[int, np.ndarray]) -> int:
        shapes = {}
        for key, (shape, axes) in self.weights.items():
            sizes = list(shape)
            for axis, gi, counts in axes:
                mask = keep.get(gi)
                if mask is not None:
                    sizes[axis] = min(sizes[axis], int(counts[mask].sum()))
            shapes[key] = sizes
        return self._sum(shapes)


def _made_by_the_graph(member) -> bool:
    """A tensor the model's code builds in forward (Mamba's zero scan state ``[batch, channels, state]``): it
    shrinks with its channels but holds no parameters, so the budget leaves it out."""
    return bool(member.values) and all(v.param is not None and v.param.kind == "constant" for v in member.values)


def _feasible_removal(group: CouplingGroup, order: np.ndarray, count: int) -> np.ndarray:
    """Keep mask removing up to ``count`` units in ``order`` without emptying any axis the group reaches."""
    keep = np.ones(group.units, dtype=bool)
    left = [int(s.size) for s in group.keep_one]
    sets_of_unit: dict[int, list[int]] = {}
    for k, units in enumerate(group.keep_one):
        for u in units.tolist():
            sets_of_unit.setdefault(u, []).append(k)
    removed = 0
    alive = group.units
    for u in order.tolist():
        if removed >= count or alive <= 1:
            break
        if group.frozen[u] or any(left[k] <= 1 for k in sets_of_unit.get(u, ())):
            continue
        keep[u] = False
        removed += 1
        alive -= 1
        for k in sets_of_unit.get(u, ()):
            left[k] -= 1
    return keep


def _step(group: CouplingGroup, round_to: int, multiple_of: dict[int, int]) -> int:
    """The multiple a group's kept count must be: a model constraint always, ``round_to`` if wide enough
    (at least ``8 * round_to`` units), else the largest power-of-two divisor of ``round_to`` of at least 8
    it is wide enough for: a 64-channel layer under round_to=16 keeps a multiple of 8, not any count
    (onnxruntime pads NCHWc convolutions to its 8/16-channel blocks, so 45 channels cost as much as 48)."""
    step = multiple_of.get(group.index, 1)
    if round_to > 1 and group.unit_size == 1:
        fit = round_to
        while fit > 8 and fit % 2 == 0 and group.units < 8 * fit:
            fit //= 2
        if group.units >= 8 * fit:
            step = int(np.lcm(step, fit))
    return step


def _rounded_count(group: CouplingGroup, fraction: float, step: int) -> int:
    """Units to remove for ``fraction``, so that the kept count is a multiple of ``step``."""
    n = group.units
    remove = int(np.floor(fraction * group.prunable_units + 0.5))
    if step > 1:
        kept = max(step, int(round(max(n - remove, 0) / step)) * step)
        remove = n - kept
    return max(0, min(remove, n - 1))


def _local(result, groups, scores, budget, target, round_to, multiple_of, fixed=None):
    def keep_for(fraction: float) -> dict[int, np.ndarray]:
        out = dict(fixed or {})
        for gi in groups:
            g = result.groups[gi]
            count = _rounded_count(g, fraction, _step(g, round_to, multiple_of))
            out[gi] = _feasible_removal(g, np.argsort(scores[gi], kind="stable"), count)
        return out

    lo, hi = 0.0, 1.0
    best = keep_for(0.0)
    best_gap = abs(budget.total - budget.remaining(best) - target)
    for _ in range(40):
        mid = (lo + hi) / 2
        keep = keep_for(mid)
        removed = budget.total - budget.remaining(keep)
        if abs(removed - target) < best_gap:
            best, best_gap = keep, abs(removed - target)
        lo, hi = (mid, hi) if removed < target else (lo, mid)
    return best


def _kind(group: CouplingGroup) -> frozenset:
    """What a group is, independent of its layer: its members' names without layer indices, and axes."""
    return frozenset((_LAYER_INDEX.sub(".#", m.key), m.axis) for m in group.members)


def _zscore(values: np.ndarray, free: np.ndarray) -> np.ndarray:
    std = free.std() if free.size > 1 else 0.0
    return (values - free.mean()) / (std if std > 0 else 1.0) if free.size else values


def standardize_scores(result: CouplingResult, groups: list[int], scores: dict[int, np.ndarray],
                       how: str = "mean") -> dict[int, np.ndarray]:
    """Scores of ``groups`` made comparable across groups (see the module docstring); frozen units are
    left out of the moments, since they are never ranked."""
    if how not in STANDARDIZE_CHOICES:
        raise PassError(f"standardize must be one of {', '.join(STANDARDIZE_CHOICES)}, got {how!r}")
    out: dict[int, np.ndarray] = {}
    if how == "kind":
        kinds: dict[frozenset, list[int]] = {}
        for gi in groups:
            kinds.setdefault(_kind(result.groups[gi]), []).append(gi)
        for members in kinds.values():
            free = np.concatenate([scores[gi][~result.groups[gi].frozen] for gi in members])
            for gi in members:
                out[gi] = _zscore(scores[gi], free)
        return out
    for gi in groups:
        s = scores[gi]
        free = s[~result.groups[gi].frozen]
        if how == "group":
            out[gi] = _zscore(s, free)
        else:
            scale = free.mean() if free.size and free.mean() > 0 else 1.0
            out[gi] = s / scale
    return out


def _global(result, groups, scores, budget, target, round_to, multiple_of, standardize="mean", unit_cost=None,
            max_fraction=1.0, fixed=None):
    ranked = []
    comparable = standardize_scores(result, groups, scores, standardize)
    if unit_cost is not None:
        comparable = per_cost(result, groups, comparable, unit_cost)
    for gi in groups:
        g = result.groups[gi]
        free = np.flatnonzero(~g.frozen)
        if max_fraction < 1.0:  # only a group's weakest units up to the cap enter the ranking
            free = free[np.argsort(scores[gi][free], kind="stable")][: int(np.floor(max_fraction * g.units))]
        for u in free.tolist():
            ranked.append((comparable[gi][u], gi, u))
    ranked.sort()

    def keep_for(prefix: int) -> dict[int, np.ndarray]:
        chosen: dict[int, list[int]] = {gi: [] for gi in groups}
        for _, gi, u in ranked[:prefix]:
            chosen[gi].append(u)
        out = dict(fixed or {})
        for gi in groups:
            g = result.groups[gi]
            count = len(chosen[gi])
            step = _step(g, round_to, multiple_of)
            if step > 1:
                count = g.units - max(step, int(round((g.units - count) / step)) * step)
            order = np.array(chosen[gi] + [u for u in np.argsort(scores[gi]).tolist() if u not in set(chosen[gi])])
            out[gi] = _feasible_removal(g, order, max(0, count))
        return out

    lo, hi = 0, len(ranked)
    while lo < hi:
        mid = (lo + hi) // 2
        if budget.total - budget.remaining(keep_for(mid)) < target:
            lo = mid + 1
        else:
            hi = mid
    return keep_for(lo)


def _refine(result, keep, scores, budget, target, round_to, multiple_of, rounds: int = 64, fixed=frozenset()):
    """Close the gap the coarse search left: repeatedly take the one extra step in one group (or give one
    back) that brings the removed parameter count closest to the target."""
    keep = dict(keep)
    gap = abs(budget.total - budget.remaining(keep) - target)
    # Adjust only the finest groups (plain channels): an extra KV head taken from one layer to close a small
    # gap would cost far more quality than the parameters it balances. A unit of two positions is still one
    # channel (a fused gate/up projection, e.g. mixture-of-experts weights, holds its gate and up rows).
    finest = max(min(result.groups[gi].unit_size for gi in keep), _CHANNEL_UNIT) if keep else 1
    adjustable = [gi for gi in keep if result.groups[gi].unit_size <= finest and gi not in fixed]
    for _ in range(rounds):
        best = None
        for gi in adjustable:
            mask = keep[gi]
            g = result.groups[gi]
            step = _step(g, round_to, multiple_of)
            order = np.argsort(scores[gi], kind="stable")
            removed_now = int((~mask).sum())
            for count in (removed_now + step, removed_now - step):
                if count < 0 or count >= g.units:
                    continue
                trial = _feasible_removal(g, order, count)
                candidate = dict(keep)
                candidate[gi] = trial
                trial_gap = abs(budget.total - budget.remaining(candidate) - target)
                if trial_gap < gap and (best is None or trial_gap < best[0]):
                    best = (trial_gap, gi, trial)
        if best is None:
            break
        gap, gi, trial = best
        keep[gi] = trial
    return keep


def _best_tied(result, keep, scores, tie: WidthTie, budget, target, round_to, multiple_of,
               floor: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The tie's keep masks (:func:`.width_ties.tied_keep`) for the head count that brings the plan's removed
    parameters nearest ``target``, the rest of ``keep`` as planned; nothing removed where no count fits. A count
    is out when the tied groups alone (with ``floor``, the masks of ties chosen before) would remove more than
    3% of the parameters beyond the target: the other groups can give back no more than they took, and a
    smaller head count would overshoot less (one head of three is a third of the residual stream)."""
    best, best_gap = {gi: np.ones(result.groups[gi].units, dtype=bool) for gi in tie.groups}, None
    everything_kept = {gi: np.ones(result.groups[gi].units, dtype=bool) for gi in keep}
    for count in tie_counts(result, tie):
        masks = tied_keep(result, scores, tie, count, lambda g: _step(g, round_to, multiple_of), _feasible_removal)
        if masks is None:
            continue
        least = budget.total - budget.remaining({**everything_kept, **floor, **masks})
        if least - target > 0.03 * budget.total:
            continue
        gap = abs(budget.total - budget.remaining({**keep, **masks}) - target)
        if best_gap is None or gap < best_gap:
            best, best_gap = masks, gap
    return best


def per_cost(result: CouplingResult, groups: list[int], comparable: dict[int, np.ndarray],
             unit_cost: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Standardized importance per unit of cost (``cost=latency``): a unit that saves twice the mean
    latency ranks as if half as important. Costs are floored at 1% of the mean, so a unit whose saving
    was not measured is pruned last, not never."""
    mean = float(np.mean(np.concatenate([unit_cost[gi] for gi in groups]))) or 1.0
    return {gi: comparable[gi] / np.maximum(unit_cost[gi] / mean, 0.01) for gi in groups}


def plan_pruning(result: CouplingResult, groups: list[int], scores: dict[int, np.ndarray], ratio: float,
                 scope: str = "local", round_to: int = 1, multiple_of: dict[int, int] | None = None,
                 standardize: str = "mean", unit_cost: dict[int, np.ndarray] | None = None,
                 budget: ParameterBudget | None = None, target: float | None = None,
                 max_fraction: float = 1.0, ties: list[WidthTie] | None = None) -> PruningPlan:
    """Keep masks for ``groups`` removing about ``ratio`` of their parameters (see module docstring).

    ``multiple_of`` maps a group index to a multiple its kept count must be (a model's own constraint,
    e.g. a Hugging Face config that requires hidden_size % num_attention_heads == 0). ``standardize``
    applies to ``scope=global`` only. ``unit_cost`` (per group, what removing each unit saves, e.g. its
    measured latency) ranks units across groups by importance per cost, whatever ``scope``. ``budget`` and
    ``target`` replace the parameter count and ``ratio * total`` (e.g. a FLOPs budget and FLOPs to remove);
    ``max_fraction`` caps the fraction of any group's units a cross-group ranking removes. ``ties`` make groups
    lose equal widths (:mod:`.width_ties`); the other groups are refined to land near the target."""
    budget = budget or ParameterBudget(result, groups)
    if ratio <= 0 or not groups:
        return PruningPlan({}, budget.total, 0)
    target = ratio * budget.total if target is None else target
    scope = "global" if unit_cost is not None else scope

    def base_plan(planned: list[int], fixed: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
        if scope == "local":
            return _local(result, planned, scores, budget, target, round_to, multiple_of or {}, fixed)
        return _global(result, planned, scores, budget, target, round_to, multiple_of or {}, standardize, unit_cost,
                       max_fraction, fixed)

    keep = base_plan(groups)
    tied: dict[int, np.ndarray] = {}
    for tie in ties or ():
        tied.update(_best_tied(result, keep, scores, tie, budget, target, round_to, multiple_of or {}, tied))
        keep.update(tied)
    if tied:  # the other groups planned again around the tied ones, so the plan still lands near the target
        keep = base_plan([gi for gi in groups if gi not in tied], tied)
    if (scope == "local" or tied) and len(groups) <= 512:
        keep = _refine(result, keep, scores, budget, target, round_to, multiple_of or {}, fixed=frozenset(tied))
    removed = budget.total - budget.remaining(keep)
    plan = PruningPlan({gi: m for gi, m in keep.items() if not m.all()}, budget.total, removed)
    limits = [result.groups[gi].name() for gi in groups if keep[gi].sum() <= 1 or
              (~keep[gi]).sum() >= result.groups[gi].prunable_units]
    if removed < 0.9 * target and limits:
        advice = "a smaller ratio or scope=global" if scope == "local" else "a smaller ratio"
        raise InfeasibleRequestError(
            f"ratio={ratio:g} would empty a group: only {removed / budget.total:.1%} of the in-scope parameters "
            f"can be removed while every group keeps at least one unit; groups at their limit: "
            f"{', '.join(limits[:5])}. Use {advice}.")
    if abs(removed - target) > 0.03 * budget.total:
        plan.notes.append(f"removed {removed / budget.total:.1%} of in-scope parameters for ratio {ratio:g}: "
                          "the groups' unit sizes allow no closer choice")
    for gi, mask in plan.keep.items():
        g = result.groups[gi]
        if g.unit_size > 1:
            plan.notes.append(f"{g.name()}: kept {int(mask.sum())} of {g.units} units "
                              f"(whole blocks of {g.unit_size}; requested ratio rounded)")
    return plan
