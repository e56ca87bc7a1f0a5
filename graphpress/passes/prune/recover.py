"""Recover from a pruning plan whose edited model no longer runs: find the groups that break it, freeze them.

Why: the coupling analysis sees only what the trace recorded. Forward code that computes a size at run time
from another tensor (SegFormer's sequence reduction reshapes a conv's output to the width of its *input*)
ties two widths the graph never shows, so a plan can prune them apart and the edited model fails, or returns
outputs of another shape. Rather than refusing the whole pass, the pass (``recover=true``) tests its plan
first and leaves the offending groups unpruned.

How: a *trial* applies the keep masks of some of the plan's groups to a fresh copy of the graph (the pass's
own graph and the user's model are never touched), runs the example inputs, and fails when the forward
raises or an output's shape differs from the unpruned model's. Culprits are found one at a time by bisection
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
explains freeze groups.

Repeated blocks run the same forward code, so a culprit's *twins* (groups whose members sit at the same paths
in other blocks: equal keys once the block indices are blanked out) break the model the same way; those not yet
shown to run are frozen with it, and the next trial checks the rest. A twin the plan did not prune (a head group
of two heads keeps both at a low ratio) was never shown to run pruned: it is frozen too, else the plan made
without the culprit would prune it and fail again in the next block. Without this, a model whose every block
computes a size at run time (MaxViT, LeViT, PVT) spent the trial budget finding the same culprit block by block.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ...analysis.coupling import CouplingResult
from ...backends.evaluate import evaluate, innermost_submodule
from ...backends.size_attributes import SizeRule, record_rules
from ...errors import BackendError
from ...ir import Graph
from ...progress import progress
from .allocate import PruningPlan
from .apply import apply_keep_mask
from .size_repair import Attempt, agrees, attempt, graph_outputs, repair_sizes

__all__ = ["MAX_TRIALS", "Breakage", "FrozenGroup", "PlanTrials", "find_culprits", "recover_plan",
           "recover_skip_reason"]

MAX_TRIALS = 32
_BLOCK_INDEX = re.compile(r"(?<![^.])\d+(?![^.])")
_ERROR_CHARS = 240


@dataclass
class Breakage:
    """How a trial failed: the innermost submodule that raised ('' when unknown) and the error text."""

    where: str
    error: str

    def describe(self) -> str:
        return f"{self.where or 'the model'}: {self.error}"


@dataclass
class FrozenGroup:
    """A group left unpruned because pruning it broke the model."""

    group: int
    name: str
    breakage: Breakage

    def message(self) -> str:
        return f"{self.name}: frozen because pruning them broke {self.breakage.describe()}"


def _available_memory() -> int | None:
    """Bytes of memory the OS reports free for new allocations (None where it cannot say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def recover_skip_reason(graph: Graph, available: int | None = None) -> str | None:
    """Why the up-front trial cannot run here, or None: each trial holds a full copy of the weights beside
    the pass's own, so a model whose copy would not fit in half the free memory is not tried (the pass
    manager's output check still catches a broken edit, with the failing submodule named)."""
    needed = graph.parameter_bytes()
    available = _available_memory() if available is None else available
    if available is not None and 2 * needed > available:
        return (f"a trial copy of {needed / 2**30:.1f} GiB of weights needs more than half of the "
                f"{available / 2**30:.1f} GiB free")
    return None


class _OutOfTrials(Exception):
    pass


def _twin(graph: Graph, result: CouplingResult) -> tuple[Graph, CouplingResult]:
    """Independent copies of ``graph`` and of ``result`` pointing into the copy.

    ``Graph.__deepcopy__`` clones values and nodes itself (not through the memo), so the memo is filled
    with old-to-new pairs by walking both graphs in the same order before ``result`` is copied."""
    twin = copy.deepcopy(graph)
    memo: dict[int, object] = {}
    for old, new in zip(graph.nodes, twin.nodes):
        memo[id(old)] = new
        for a, b in zip(list(old.inputs) + list(old.outputs), list(new.inputs) + list(new.outputs)):
            if a is not None:
                memo[id(a)] = b
    for a, b in zip(list(graph.inputs) + list(graph.constants) + list(graph.outputs),
                    list(twin.inputs) + list(twin.constants) + list(twin.outputs)):
        memo[id(a)] = b
    return twin, copy.deepcopy(result, memo)


def _short(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    text = f"{type(error).__name__}: {text}" if not isinstance(error, BackendError) else text
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS - 3] + "..."


class _Broke(Exception):
    def __init__(self, breakage: Breakage):
        super().__init__(breakage.describe())
        self.breakage = breakage


class PlanTrials:
    """Runs trials of keep masks on copies of ``graph``, at most ``max_trials`` of them (see module doc)."""

    def __init__(self, graph: Graph, result: CouplingResult, inputs: tuple, kwargs: dict | None,
                 max_trials: int | None = None, repair: bool = True):
        self.graph, self.result = graph, result
        self.repair = repair
        self.repairs: list[tuple[SizeRule, bool]] = []  # (rule, checked against the graph's own outputs)
        self.unrepairable: dict[tuple[str, str], str] = {}  # (failing module's class, error) -> note on the search
        self.inputs, self.kwargs = tuple(inputs), dict(kwargs or {})
        self.max_trials = MAX_TRIALS if max_trials is None else max_trials
        self.runs = 0
        self.bar: object | None = None
        self.reference = [tuple(t.shape) for t in evaluate(graph, self.inputs, self.kwargs)]

    def run(self, keep: dict[int, np.ndarray], groups: list[int] | None = None) -> Breakage | None:
        """None when the model pruned by ``keep`` (restricted to ``groups``) runs with the original output
        shapes, else how it broke."""
        if self.runs >= self.max_trials:
            raise _OutOfTrials
        self.runs += 1
        if self.bar is not None:
            self.bar.update(1)
        chosen = {gi: keep[gi] for gi in (keep if groups is None else groups)}
        twin, twin_result = _twin(self.graph, self.result)
        try:
            apply_keep_mask(twin, twin_result, twin_result.keep_ids(chosen))
            shapes = self._output_shapes(twin)
        except _Broke as broke:
            return broke.breakage
        except Exception as error:  # noqa: BLE001 - any failure of the edited model is what a trial detects
            return Breakage("", _short(error))
        if shapes != self.reference:
            return Breakage("the outputs", f"output shapes changed from {self.reference} to {shapes}")
        return None

    def _output_shapes(self, twin: Graph) -> list[tuple[int, ...]]:
        if twin.origin != "torch" or twin.module is None:
            return [tuple(t.shape) for t in evaluate(twin, self.inputs, self.kwargs)]
        from ...backends.torch_module import finalize_module

        module = finalize_module(twin)
        run = attempt(module, self.inputs, self.kwargs)
        if not run.ok and self.repair:
            run = self._repaired(twin, module, run)
        if not run.ok:
            raise _Broke(Breakage(innermost_submodule(run.where), _short(run.error)))
        return [tuple(t.shape) for t in run.outputs]

    def _repaired(self, twin: Graph, module: torch.nn.Module, failed: Attempt) -> Attempt:
        """``failed`` unless stale size attributes explain it (:mod:`.size_repair`); rules that make the copy
        run with the pruned graph's outputs are recorded on the pass's graph, so later trials and the model
        handed back apply them."""
        where = innermost_submodule(failed.where)
        signature = (type(module.get_submodule(where)).__name__ if where else "", _short(failed.error))
        if signature not in self.unrepairable:  # bisection meets the same failure many times: search it once
            verdicts: list[bool] = []
            reference: list = []

            def accept(outputs: list[torch.Tensor]) -> bool:
                if [tuple(t.shape) for t in outputs] != self.reference:
                    return False
                if not reference:
                    reference.append(graph_outputs(twin, self.inputs, self.kwargs))
                verdicts.append(reference[0] is None or agrees(reference[0], outputs))
                return verdicts[-1]

            rules, run = repair_sizes(self.graph.module, module, self.inputs, self.kwargs, failed, accept)
            if rules:
                record_rules(self.graph, rules)
                self.repairs += [(rule, reference[0] is not None) for rule in rules]
                return run
            # Numbers that let it run but compute something else: say so in the frozen groups' reason.
            self.unrepairable[signature] = " (a rewritten size attribute let it run but changed what it computes)" \
                if False in verdicts else ""
        note = self.unrepairable[signature]
        return Attempt(None, failed.where, BackendError(signature[1] + note), failed.done) if note else failed


def _suspects(result: CouplingResult, groups: list[int], where: str) -> set[int]:
    """Groups with a weight inside the submodule that failed: the likeliest culprits."""
    if not where or where == "the outputs":
        return set()
    prefix = where + "."
    return {gi for gi in groups if any(m.key.startswith(prefix) for m in result.groups[gi].members)}


def _block_pattern(result: CouplingResult, group: int) -> frozenset[str]:
    """The group's member keys with every block index (a path component that is a number) blanked out: equal
    for the same group of repeated blocks; ``conv1`` and ``conv2`` of one block stay apart."""
    return frozenset(_BLOCK_INDEX.sub("#", m.key) for m in result.groups[group].members)


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
    ``culprits`` as they are found, so a caller keeps them when ``_OutOfTrials`` ends the search."""
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
            broke = trials.run(keep, order[:mid])
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
        broke = trials.run(keep, order)
        if broke is None:
            return culprits
        hi, failing = len(order), broke


def _ignore_hint(broke: Breakage | None) -> str:
    where = broke.where if broke is not None else ""
    return f"{where}*" if where and where != "the outputs" else "<module>*"


def recover_plan(plan: PruningPlan, groups: list[int], replan: Callable[[list[int]], PruningPlan],
                 trials: PlanTrials, desc: str) -> tuple[PruningPlan, list[FrozenGroup]]:
    """``plan`` if its edited model runs; otherwise a plan over ``groups`` minus the groups found to break
    the model (``replan`` plans for a list of group indices), and those groups. Raises
    :class:`BackendError` naming the failing submodule when ``trials`` runs out first."""
    frozen: list[FrozenGroup] = []
    broke = trials.run(plan.keep) if plan.keep else None
    if broke is None:
        return plan, frozen
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
        except _OutOfTrials:
            raise BackendError(
                f"the edited {type(trials.graph.module).__name__ if trials.graph.module is not None else 'model'} "
                f"no longer runs: {broke.describe() if broke else 'unknown'}; recover= found no working set of "
                f"groups within {trials.max_trials} trial runs (frozen so far: "
                f"{', '.join(f.name for f in frozen) or 'none'}). Its forward code probably computes a size the "
                f"traced graph does not record; leave it out of the pass with ignore={_ignore_hint(broke)} "
                f"(or report the pattern)") from None
        finally:
            trials.bar = None
    return plan, frozen
