"""Recover from a pruning plan whose edited model no longer runs: find the groups that break it, freeze them.

Why: the coupling analysis sees only what the trace recorded. Forward code that computes a size at run time
from another tensor (SegFormer's sequence reduction reshapes a conv's output to the width of its *input*)
ties two widths the graph never shows, so a plan can prune them apart and the edited model fails, or returns
outputs of another shape. Rather than refusing the whole pass, the pass (``recover=true``) tests its plan
first and leaves the offending groups unpruned.

How: a *trial* (:mod:`.plan_trials`) runs the model pruned by some of the plan's groups on a copy and fails when
it raises, changes output shapes or computes other values than its pruned graph. Culprits are found one at a time
by bisection
over an ordered list of the plan's groups: the prefix of length ``lo`` is known to run, the one of length
``hi`` known to fail, so the shortest failing prefix ends with a culprit (assumed monotone: pruning more
never repairs a model). Groups touching the submodule that failed go last, so the first probe (everything
but them) usually confirms the suspects in one run. After freezing a culprit the rest is tried again, so
``k`` culprits among ``G`` groups cost O(k log G) trial runs; :data:`MAX_TRIALS` caps the search, after
which the pass gives up with the located error (``ignore=`` advice). The caller then plans again with the
remaining groups, which take over the requested ratio.

Before a failure counts, stale size attributes get a chance: a module that reshapes with a number it stored
(``self.embed_dim``) is repaired by rewriting that number (:mod:`.size_repair`), checked against the pruned
graph's own outputs, and the rule is kept for the model the pass hands back; only failures no such rewrite
explains freeze groups. Once the plan runs, frozen residual groups get one trial each tied to the head groups
whose width the model's code reads as theirs (:mod:`.width_ties`); a tie that runs unfreezes them.

Repeated blocks run the same forward code, so a culprit's *twins* (groups whose members sit at the same paths
in other blocks: equal keys once the block indices are blanked out) break the model the same way; those not yet
shown to run are frozen with it, and the next trial checks the rest. A twin the plan did not prune (a head group
of two heads keeps both at a low ratio) was never shown to run pruned: it is frozen too, else the plan made
without the culprit would prune it and fail again in the next block. Without this, a model whose every block
computes a size at run time (MaxViT, LeViT, PVT) spent the trial budget finding the same culprit block by block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...analysis.coupling import CouplingResult
from ...errors import BackendError
from ...progress import progress
from .allocate import PruningPlan
from .plan_trials import MAX_TRIALS, Breakage, OutOfTrials, PlanTrials, recover_skip_reason
from .width_ties import WidthTie, propose_ties

__all__ = ["MAX_TRIALS", "Breakage", "FrozenGroup", "PlanTrials", "find_culprits", "recover_plan",
           "recover_skip_reason"]

_BLOCK_INDEX = re.compile(r"(?<![^.])\d+(?![^.])")


@dataclass
class FrozenGroup:
    """A group left unpruned because pruning it broke the model."""

    group: int
    name: str
    breakage: Breakage

    def message(self) -> str:
        return f"{self.name}: frozen because pruning them broke {self.breakage.describe()}"


def _suspects(result: CouplingResult, groups: list[int], where: str) -> set[int]:
    """Groups with a weight inside the submodule that failed: the likeliest culprits."""
    if not where or where == "the outputs":
        return set()
    prefix = where + "."
    return {gi for gi in groups if any(m.key.startswith(prefix) for m in result.groups[gi].members)}


def _block_pattern(result: CouplingResult, group: int) -> frozenset[str]:
    """The group's named member keys (:attr:`CouplingGroup.named_members`) with every block index (a path
    component that is a number) blanked out: equal for the same group of repeated blocks; ``conv1`` and
    ``conv2`` of one block stay apart."""
    return frozenset(_BLOCK_INDEX.sub("#", m.key) for m in result.groups[group].named_members)


def _pruning(keep: dict[int, np.ndarray]) -> set[int]:
    """Groups whose keep mask removes at least one unit."""
    return {g for g, mask in keep.items() if not np.all(mask)}


def _twin_of(result: CouplingResult, twin: int, culprit: int, failing: Breakage) -> FrozenGroup:
    why = Breakage(failing.where, f"same block code as {result.groups[culprit].name()}: {failing.error}")
    return FrozenGroup(twin, result.groups[twin].name(), why)


def freeze_unpruned_twins(result: CouplingResult, groups: list[int], keep: dict[int, np.ndarray],
                          frozen: list[FrozenGroup]) -> None:
    """Append to ``frozen`` the twins of its groups that ``keep`` did not prune: no trial ran them pruned, and
    the next plan, made without the culprits, would prune them and fail the same way one block further."""
    done = {f.group for f in frozen} | _pruning(keep)
    for found in list(frozen):
        pattern = _block_pattern(result, found.group)
        for g in groups:
            if g not in done and _block_pattern(result, g) == pattern:
                done.add(g)
                frozen.append(_twin_of(result, g, found.group, found.breakage))


def find_culprits(trials: PlanTrials, keep: dict[int, np.ndarray], failure: Breakage,
                  culprits: list[FrozenGroup] | None = None) -> list[FrozenGroup]:
    """Groups of ``keep`` (a plan that fails with ``failure``) whose pruning breaks the model, by prefix
    bisection, with the twins of each in repeated blocks (module doc). Found groups are appended to
    ``culprits`` as they are found, so a caller keeps them when ``OutOfTrials`` ends the search."""
    result = trials.result
    order = sorted(_pruning(keep))  # a group whose mask removes nothing cannot break a trial
    lo, hi, failing = 0, len(order), failure
    culprits = [] if culprits is None else culprits
    while True:
        # Put suspects of the current failure at the end of the unknown region (the known-good prefix stays).
        suspects = _suspects(result, order[lo:hi], failing.where)
        order[lo:hi] = [g for g in order[lo:hi] if g not in suspects] + [g for g in order[lo:hi] if g in suspects]
        boundary = hi - len(suspects) if suspects else None
        while hi - lo > 1:
            # The suspects' boundary first (one run confirms them when the hint is right), then halves.
            mid = boundary if boundary is not None and lo < boundary < hi else (lo + hi) // 2
            boundary = None
            broke = trials.run(keep, order[:mid], values=failing.values)
            if broke is None:
                lo = mid
            else:
                hi, failing = mid, broke
        culprit = order.pop(hi - 1)
        culprits.append(FrozenGroup(culprit, result.groups[culprit].name(), failing))
        lo = hi - 1  # the prefix before the culprit ran
        pattern = _block_pattern(result, culprit)
        twins = [g for g in order[lo:] if _block_pattern(result, g) == pattern]
        for twin in twins:
            order.remove(twin)
            culprits.append(_twin_of(result, twin, culprit, failing))
        if lo >= len(order):
            return culprits
        broke = trials.run(keep, order, values=True)
        if broke is None:
            return culprits
        hi, failing = len(order), broke


def _ignore_hint(broke: Breakage | None) -> str:
    where = broke.where if broke is not None else ""
    return f"{where}*" if where and where != "the outputs" else "<module>*"


def recover_plan(plan: PruningPlan, groups: list[int], replan: Callable[..., PruningPlan],
                 trials: PlanTrials, desc: str) -> tuple[PruningPlan, list[FrozenGroup], list[WidthTie]]:
    """``plan`` if its edited model runs; otherwise a plan over ``groups`` minus the groups found to break
    the model (``replan(groups, ties)`` plans for a list of group indices), those groups, and the width ties
    (:mod:`.width_ties`) that let some of them be pruned after all. Raises :class:`BackendError` naming the
    failing submodule when ``trials`` runs out before a working plan is found."""
    frozen: list[FrozenGroup] = []
    broke = trials.run(plan.keep) if plan.keep else None
    if broke is None:
        return plan, frozen, []
    with progress(trials.max_trials, f"{desc}: finding groups that break the model") as bar:
        trials.bar = bar
        try:
            while broke is not None:
                find_culprits(trials, plan.keep, broke, frozen)
                freeze_unpruned_twins(trials.result, groups, plan.keep, frozen)
                bar.set_postfix_str(f"{len(frozen)} frozen")
                out = {f.group for f in frozen}
                plan = replan([gi for gi in groups if gi not in out])
                broke = trials.run(plan.keep) if plan.keep else None
        except OutOfTrials:
            raise BackendError(
                f"the edited {type(trials.graph.module).__name__ if trials.graph.module is not None else 'model'} "
                f"no longer runs: {broke.describe() if broke else 'unknown'}; recover= found no working set of "
                f"groups within {trials.max_trials} trial runs (frozen so far: "
                f"{', '.join(f.name for f in frozen) or 'none'}). Its forward code probably computes a size the "
                f"traced graph does not record; leave it out of the pass with ignore={_ignore_hint(broke)} "
                f"(or report the pattern)") from None
        finally:
            trials.bar = None
    return _try_ties(plan, groups, replan, trials, frozen)


def _try_ties(plan: PruningPlan, groups: list[int], replan: Callable[..., PruningPlan], trials: PlanTrials,
              frozen: list[FrozenGroup]) -> tuple[PruningPlan, list[FrozenGroup], list[WidthTie]]:
    """Give each width tie among the frozen groups one trial: a tie whose plan runs (and computes what its graph
    does) unfreezes its groups. Stops quietly when the trial budget is spent."""
    ties: list[WidthTie] = []
    for tie in propose_ties(trials.result, [f.group for f in frozen], groups):
        if trials.runs >= trials.max_trials:
            break
        if any(set(tie.groups) & set(taken.groups) for taken in ties):
            continue  # a group loses one width: the first tie that ran decides it
        out = {f.group for f in frozen} - set(tie.groups)
        candidate = replan([gi for gi in groups if gi not in out], ties + [tie])
        trials.forget_repair_verdicts()
        if not any(gi in candidate.keep for gi in tie.groups) or trials.run(candidate.keep) is not None:
            continue
        ties.append(tie)
        plan, frozen = candidate, [f for f in frozen if f.group in out]
    return plan, frozen, ties
