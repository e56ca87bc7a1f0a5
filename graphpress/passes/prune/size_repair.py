"""Repair by trial: when a pruned copy fails inside a module's forward, find the size attributes it reads.

Why: ``recover=`` (:mod:`.recover`) freezes a group whose pruning breaks the user's forward code. Often the code
is fine and only a stored number is stale: SpeechT5's attention reshapes to ``self.embed_dim``, Conditional-DETR's
cross-attention splits by ``self.num_attention_heads``. Freezing those groups keeps whole attention blocks at
full width; rewriting the number lets them prune.

How: the module that failed and its two enclosing modules are searched, innermost first (modules whose methods
raised come first, since a helper the forward calls directly, like ``self.rel_pos.get_bias()``, is on the
traceback but not on the forward stack). Their integer
attributes that equal (or divide) an old size of a tensor beneath them are candidates (ranked by
:func:`~graphpress.backends.size_attributes.propose_rules`); each is tried alone, then pairs of the best few,
in every module of the same class at once (repeated blocks). A candidate is kept when the model then runs, or
while the run gets further with it (more submodule calls complete before it fails, or a later statement of the
same forward fails) and the next failure, searched the same way, is repaired too (depth-first, undone if not). Whatever is kept must in the end run the whole model with the unpruned output shapes;
and the caller's ``accept`` checks its outputs against the pruned graph itself (:func:`graph_outputs`), since a wrong
number can run and compute something else (a candidate that runs wrong is undone and the search goes on, unless
the caller names suspects: modules of other classes owning pruned heads, where a second stale number may make the
run wrong without failing; those are then searched as failures of their own, the candidate kept meanwhile).
Otherwise everything is undone and the groups freeze as before.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from ...backends.evaluate import flatten_outputs, innermost_submodule, relative_error, submodule_stack
from ...backends.size_attributes import SizeRule, apply_rules, propose_rules, twin_rules, undo
from ...ir import Graph
from ...ir.parameter import drop_derived_caches

__all__ = ["Attempt", "attempt", "repair_sizes", "graph_outputs", "agrees", "MAX_REPAIR_RUNS"]

#: Forward runs one repair may spend (each is a full forward on the example inputs).
MAX_REPAIR_RUNS = 24
_OWNER_DEPTH = 3  # the failing module and two enclosing ones
_PAIRED = 4  # pairs are formed among this many best candidates
_MAX_STEPS = 4  # failures one repair may walk through (each a later statement or module)
_GRAPH_TOLERANCE = 1e-3


@dataclass
class Attempt:
    """One forward run: the outputs, or where it failed (module stack, outermost first) and the error."""

    outputs: list[torch.Tensor] | None
    where: list[str] = field(default_factory=list)
    error: BaseException | None = None
    done: Counter = field(default_factory=Counter)
    #: (file, function, line) of each frame of the failing module's own code, outermost first
    position: tuple[tuple[str, str, int], ...] = ()
    #: paths of the modules whose methods are on the failure's traceback, outermost first: with a helper
    #: method called directly (timm's ``self.rel_pos.get_bias()``), its module is not on the forward stack
    in_code: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outputs is not None

    @property
    def progress(self) -> int:
        """Forward calls completed before the failure: execution order is fixed, so more means further."""
        return sum(self.done.values())


def attempt(module: nn.Module, inputs: tuple, kwargs: dict) -> Attempt:
    """Run ``module`` once, recording how far it got (completed forward calls per submodule)."""
    done: Counter = Counter()
    with submodule_stack(module, done) as stack, torch.no_grad():
        try:
            return Attempt(flatten_outputs(module(*inputs, **kwargs)), done=done)
        except Exception as error:  # noqa: BLE001 - any failure of the edited model is what a trial records
            owner = module.get_submodule(innermost_submodule(stack)) if "?" not in stack else None
            frames = _module_frames(error)
            paths = {id(m): name for name, m in module.named_modules()}
            position = tuple(where for obj, where in frames if obj is owner)
            in_code = list(dict.fromkeys(paths[id(obj)] for obj, _ in frames if id(obj) in paths))
            return Attempt(None, list(stack), error, done, position, in_code)


def _module_frames(error: BaseException) -> list[tuple[nn.Module, tuple[str, str, int]]]:
    """The traceback's frames of module code (``self`` a module; not ``nn.Module``'s call machinery), outermost
    first: each frame's module and (file, function, line)."""
    frames, tb = [], error.__traceback__
    while tb is not None:
        code, obj = tb.tb_frame.f_code, tb.tb_frame.f_locals.get("self")
        if isinstance(obj, nn.Module) and code.co_filename != _MODULE_CALL_FILE:
            frames.append((obj, (code.co_filename, code.co_name, tb.tb_lineno)))
        tb = tb.tb_next
    return frames


_MODULE_CALL_FILE = nn.modules.module.__file__  # nn.Module's __call__ machinery: the same in every run


def _owners(failed: Attempt) -> list[str]:
    """Modules to search, innermost first: those whose code raised, then the forward stack's."""
    owners: list[str] = []
    for name in [*reversed(failed.in_code), *reversed(failed.where)]:
        if name not in owners and name != "?":
            owners.append(name)
    return owners[:_OWNER_DEPTH]


def _candidate_sets(candidates: list[tuple[SizeRule, int]]) -> Iterator[list[SizeRule]]:
    """Each candidate alone, then pairs (two different attributes) of the best few."""
    for rule, _ in candidates:
        yield [rule]
    best = [rule for rule, _ in candidates[:_PAIRED]]
    for a, b in itertools.combinations(best, 2):
        if a.attr != b.attr:
            yield [a, b]


def _further(trial: Attempt, current: Attempt) -> bool:
    """Whether the failed ``trial`` got further than ``current``: more calls completed, or as many and a later
    statement of the same module's forward failing (the head count now fits, the merged width does not yet).
    A later line of the same code is later; on one line (a chain of calls), another kind of error is taken as
    later, and the same message with other numbers is the same statement failing. Without the line order, a
    wrong width that breaks an *earlier* statement (TinyViT's split of each head by ``key_dim`` before the
    reshape by ``out_dim``) would look like progress and lead the search away."""
    if trial.progress != current.progress:
        return trial.progress > current.progress
    if trial.where != current.where:
        return False
    for now, before in zip(trial.position, current.position):
        if now[:2] != before[:2]:
            break  # other code: lines don't compare
        if now[2] != before[2]:
            return now[2] > before[2]
    return _statement(trial.error) != _statement(current.error)


def _statement(error: BaseException | None) -> str:
    """The error's text without its numbers: the same check failing with other sizes is the same statement."""
    return re.sub(r"\d+", "#", f"{type(error).__name__}: {error}")


def repair_sizes(original: nn.Module, edited: nn.Module, inputs: tuple, kwargs: dict, failed: Attempt,
                 accept: Callable[[list[torch.Tensor]], bool], max_runs: int = MAX_REPAIR_RUNS,
                 suspects: list[list[str]] | None = None) -> tuple[list[SizeRule], Attempt]:
    """Rules that make ``edited`` (a pruned copy of ``original`` whose run ``failed``) run with outputs that
    ``accept`` takes, applied to it, and that run; or ``([], failed)`` with ``edited`` unchanged (module doc).
    The search is depth-first: a candidate that gets the run further is kept while the next failure is
    searched, and undone when that search finds nothing (a changed error can be a wrong number's doing).
    One that runs to the end with outputs ``accept`` refuses is kept while ``suspects`` (module path chains,
    outermost first, where other stale sizes may hide: XCiT's class attention after its patch attention) are
    searched as failures of their own, and undone when that finds nothing (a head count next to a width)."""
    search = _Search(original, edited, inputs, kwargs, accept, max_runs, suspects or [])
    found = search.step(failed, 0)
    return found if found is not None else ([], failed)


class _Search:
    def __init__(self, original: nn.Module, edited: nn.Module, inputs: tuple, kwargs: dict,
                 accept: Callable[[list[torch.Tensor]], bool], max_runs: int, suspects: list[list[str]]):
        self.original, self.edited, self.inputs, self.kwargs = original, edited, inputs, kwargs
        self.accept, self.runs_left, self.suspects = accept, max_runs, suspects

    def step(self, current: Attempt, depth: int) -> tuple[list[SizeRule], Attempt] | None:
        if depth >= _MAX_STEPS:
            return None
        quoted = {int(n) for n in re.findall(r"\d+", str(current.error))}
        for owner in _owners(current):
            for chosen in _candidate_sets(propose_rules(self.original, self.edited, owner, quoted)):
                if self.runs_left <= 0:
                    return None
                rules = [r for rule in chosen for r in (rule, *twin_rules(rule, self.original))]
                old = apply_rules(self.edited, rules)
                for rule in rules:  # a cache filled at the old count (timm's attention_bias_cache) is stale
                    drop_derived_caches(self.edited.get_submodule(rule.module) if rule.module else self.edited)
                trial = attempt(self.edited, self.inputs, self.kwargs)
                self.runs_left -= 1
                if trial.ok and self.accept(trial.outputs):
                    return rules, trial
                deeper = self._elsewhere(trial, current, depth) if trial.ok else \
                    self.step(trial, depth + 1) if _further(trial, current) else None
                if deeper is not None:
                    return rules + deeper[0], deeper[1]
                undo(self.edited, old)
        return None

    def _elsewhere(self, ran: Attempt, current: Attempt, depth: int) -> tuple[list[SizeRule], Attempt] | None:
        """A run that computes other values than the graph: search the suspects it has not searched yet."""
        for chain in self.suspects:
            if chain != current.where:
                silent = Attempt(None, chain, RuntimeError("outputs differ from the pruned graph's"), ran.done)
                deeper = self.step(silent, depth + 1)
                if deeper is not None:
                    return deeper
        return None


def _feed(graph: Graph, inputs: tuple, kwargs: dict) -> dict[str, torch.Tensor] | None:
    """The graph's inputs by name: keyword inputs by their names, positional tensors in order."""
    positional = iter(x for x in inputs if isinstance(x, torch.Tensor))
    feed: dict[str, torch.Tensor] = {}
    for value in graph.inputs:
        given = kwargs.get(value.name)
        tensor = given if isinstance(given, torch.Tensor) else next(positional, None)
        if tensor is None:
            return None
        feed[value.name] = tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor
    return feed


def graph_outputs(graph: Graph, inputs: tuple, kwargs: dict) -> list[torch.Tensor] | None:
    """The pruned ``graph``'s own outputs, run by onnxruntime (independent of the module's code), or None when
    it cannot be run that way (inputs it cannot name, a graph onnxruntime refuses)."""
    from ...backends.onnx import run_onnxruntime

    feed = _feed(graph, inputs, kwargs)
    if feed is None:
        return None
    try:
        return [torch.as_tensor(out) for out in run_onnxruntime(graph, feed)]
    except Exception:  # noqa: BLE001 - a graph onnxruntime cannot run leaves the shape check alone
        return None


def agrees(reference: list[torch.Tensor], outputs: list[torch.Tensor]) -> bool:
    """Whether ``outputs`` match ``reference`` within 1e-3 of each output's largest value."""
    return relative_error([out.detach().cpu() for out in outputs], reference) <= _GRAPH_TOLERANCE
