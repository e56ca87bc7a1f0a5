"""Trial runs of a pruning plan on a copy of the graph: does the edited model still run, with the original output
shapes, and compute what the pruned graph computes? (:class:`PlanTrials`, used by :mod:`.recover`.)

A *trial* applies the keep masks of some of the plan's groups to a fresh copy of the graph (the pass's own graph and
the user's model are never touched), rebuilds the user's module from it and runs the example inputs. It fails when
the forward raises, when an output's shape differs from the unpruned model's, or (where the unpruned model and its
graph agree) when the outputs differ from the pruned graph's own, run by onnxruntime: code that reads a size at run
time can still run after pruning and compute something else (``C // num_heads`` with both pruned). Before a failure
counts, stale size attributes get a chance (:mod:`.size_repair`); rules that pass are kept for the model handed back.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import numpy as np
import torch

from ...analysis.coupling import CouplingResult
from ...backends.evaluate import evaluate, innermost_submodule, relative_error
from ...backends.size_attributes import SizeRule, record_rules, submodule_at
from ...errors import BackendError
from ...ir import Graph
from .apply import apply_keep_mask
from .size_repair import Attempt, agrees, attempt, graph_outputs, repair_sizes

__all__ = ["MAX_TRIALS", "VALUE_TOLERANCE", "Breakage", "PlanTrials", "OutOfTrials", "recover_skip_reason"]

MAX_TRIALS = 48
#: A trial whose outputs differ from the pruned graph's by more than this (relative to each output's largest
#: value) computes something else; the unpruned model must agree with its graph ten times closer to be checked.
VALUE_TOLERANCE = 1e-2
_ERROR_CHARS = 240


@dataclass
class Breakage:
    """How a trial failed: the innermost submodule that raised ('' when unknown) and the error text."""

    where: str
    error: str
    values: bool = False  # the model ran with the right shapes but computed other values than its graph

    def describe(self) -> str:
        return f"{self.where or 'the model'}: {self.error}"


def _available_memory() -> int | None:
    """Bytes of memory the OS reports free for new allocations (None where it cannot say)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def recover_skip_reason(graph: Graph, available: int | None = None, copies: int = 2) -> str | None:
    """Why the up-front trial cannot run here, or None: each trial holds a full copy of the weights beside
    the pass's own, so a model whose copy would not fit in half the free memory is not tried (the pass
    manager's output check still catches a broken edit, with the failing submodule named). ``copies``: how
    many copies of the weights must fit (4 where onnxruntime also runs the trial's graph)."""
    needed = graph.parameter_bytes()
    available = _available_memory() if available is None else available
    if available is not None and copies * needed > available:
        return (f"a trial copy of {needed / 2**30:.1f} GiB of weights needs more than half of the "
                f"{available / 2**30:.1f} GiB free")
    return None


class OutOfTrials(Exception):
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
        self.check_values = self._values_comparable()

    def run(self, keep: dict[int, np.ndarray], groups: list[int] | None = None,
            values: bool | None = None) -> Breakage | None:
        """None when the model pruned by ``keep`` (restricted to ``groups``) runs with the original output
        shapes (and values, see :meth:`_compare_values`), else how it broke. ``values`` (default: for whole
        plans only) says whether values are compared: the bisection over a plan's groups compares them only
        while it searches a failure of values, since each comparison runs the graph in onnxruntime."""
        if self.runs >= self.max_trials:
            raise OutOfTrials
        self.runs += 1
        if self.bar is not None:
            self.bar.update(1)
        chosen = {gi: keep[gi] for gi in (keep if groups is None else groups)}
        compared = self.check_values and (groups is None if values is None else values)
        twin, twin_result = _twin(self.graph, self.result)
        try:
            apply_keep_mask(twin, twin_result, twin_result.keep_ids(chosen))
            shapes = self._output_shapes(twin, chosen, compared)
        except _Broke as broke:
            return broke.breakage
        except Exception as error:  # noqa: BLE001 - any failure of the edited model is what a trial detects
            return Breakage("", _short(error))
        if shapes != self.reference:
            return Breakage("the outputs", f"output shapes changed from {self.reference} to {shapes}")
        return None

    def forget_repair_verdicts(self) -> None:
        """Search every failure afresh: the verdicts kept so far were reached at widths a width tie changes (a
        stale head count that no number could mend beside the old residual width may be mendable beside the
        new one)."""
        self.unrepairable.clear()

    def _values_comparable(self) -> bool:
        """Whether the unpruned model's own code and its graph (run by onnxruntime) agree on the example inputs,
        so that a trial can also compare values; False for ONNX graphs (the graph is the model), where the graph
        can't be run so, or where a copy for onnxruntime would not fit beside the trial's."""
        graph = self.graph
        if graph.origin != "torch" or graph.module is None or recover_skip_reason(graph, copies=4):
            return False
        expected = graph_outputs(graph, self.inputs, self.kwargs)
        run = attempt(graph.module, self.inputs, self.kwargs) if expected is not None else None
        return run is not None and run.ok and relative_error(run.outputs, expected) <= VALUE_TOLERANCE / 10

    def _output_shapes(self, twin: Graph, chosen: dict[int, np.ndarray], compared: bool) -> list[tuple[int, ...]]:
        """The rebuilt model's output shapes; where ``compared``, its values are checked against the pruned
        graph's too (``chosen``: the trial's keep masks)."""
        if twin.origin != "torch" or twin.module is None:
            return [tuple(t.shape) for t in evaluate(twin, self.inputs, self.kwargs)]
        from ...backends.torch_module import finalize_module

        module = finalize_module(twin)
        run = attempt(module, self.inputs, self.kwargs)
        if not run.ok and self.repair:
            run = self._repaired(twin, module, run, suspects=self._head_owners(chosen))
        if not run.ok:
            raise _Broke(Breakage(innermost_submodule(run.where), _short(run.error)))
        shapes = [tuple(t.shape) for t in run.outputs]
        if compared and shapes == self.reference:
            self._compare_values(twin, module, run, chosen)
        return shapes

    def _compare_values(self, twin: Graph, module: torch.nn.Module, run: Attempt,
                        chosen: dict[int, np.ndarray]) -> None:
        """Raise when the edited model runs but computes other values than the pruned graph: its code read a
        size the trace recorded as a constant and happened to fit (``C // num_heads`` with the residual width
        pruned to another multiple of the old head count). Stale head counts in the modules owning pruned heads
        get the size repair's search first."""
        expected = graph_outputs(twin, self.inputs, self.kwargs)
        if expected is None:
            return
        error = relative_error([out.detach().cpu() for out in run.outputs], expected)
        if error <= VALUE_TOLERANCE:
            return
        owners = self._head_owners(chosen)
        where = owners[0] if owners else []
        text = "the edited model runs but its outputs differ from the pruned graph's: its code computes a size " \
               f"the trace recorded as a constant{f' (pruned heads in {where[-2]})' if len(where) > 1 else ''}"
        if self.repair and where:
            silent = Attempt(None, where, BackendError(text), run.done)
            if self._repaired(twin, module, silent, expected, owners[1:]).ok:
                return
        raise _Broke(Breakage("the outputs", f"{text}; relative error {error:.1e}", values=True))

    def _head_owners(self, chosen: dict[int, np.ndarray]) -> list[list[str]]:
        """Where stale head counts may live: for each module class owning heads ``chosen`` prunes, the module
        path chain (outermost first) down to the first weight of its first such head group (``blocks.0.attn``
        for ``blocks.0.attn.qkv.weight``); repeated blocks are repaired together, so one chain per class."""
        chains: dict[tuple, list[str]] = {}
        for gi, mask in chosen.items():
            if np.all(mask) or self.result.groups[gi].unit_size <= 1:
                continue
            for member in self.result.groups[gi].members:
                parts = member.key.split(".")[:-1]
                if parts:
                    chain = [".".join(parts[:k]) for k in range(1, len(parts) + 1)]
                    chains.setdefault(self._classes(chain), chain)
                    break
        return list(chains.values())

    def _classes(self, chain: list[str]) -> tuple:
        """The classes of the modules along ``chain`` (the same for every repeated block)."""
        modules = [submodule_at(self.graph.module, path) for path in chain]
        return tuple(path if module is None else type(module).__name__ for path, module in zip(chain, modules))

    def _repaired(self, twin: Graph, module: torch.nn.Module, failed: Attempt,
                  expected: list[torch.Tensor] | None = None, suspects: list[list[str]] | None = None) -> Attempt:
        """``failed`` unless stale size attributes explain it (:mod:`.size_repair`); rules that make the copy
        run with the pruned graph's outputs (``expected``, where the caller ran the graph already) are recorded
        on the pass's graph, so later trials and the model handed back apply them."""
        where = innermost_submodule(failed.where)
        signature = (type(module.get_submodule(where)).__name__ if where else "", _short(failed.error))
        if signature not in self.unrepairable:  # bisection meets the same failure many times: search it once
            verdicts: list[bool] = []
            reference: list = [] if expected is None else [expected]

            def accept(outputs: list[torch.Tensor]) -> bool:
                if [tuple(t.shape) for t in outputs] != self.reference:
                    return False
                if not reference:
                    reference.append(graph_outputs(twin, self.inputs, self.kwargs))
                verdicts.append(reference[0] is None or agrees(reference[0], outputs))
                return verdicts[-1]

            rules, run = repair_sizes(self.graph.module, module, self.inputs, self.kwargs, failed, accept,
                                      suspects=suspects)
            if rules:
                record_rules(self.graph, rules)
                self.repairs += [(rule, reference[0] is not None) for rule in rules]
                return run
            # Numbers that let it run but compute something else: say so in the frozen groups' reason.
            self.unrepairable[signature] = " (a rewritten size attribute let it run but changed what it computes)" \
                if False in verdicts else ""
        note = self.unrepairable[signature]
        return Attempt(None, failed.where, BackendError(signature[1] + note), failed.done) if note else failed
