"""Repair by trial: when a pruned copy fails inside a module's forward, find the size attributes it reads.

Why: ``recover=`` (:mod:`.recover`) freezes a group whose pruning breaks the user's forward code. Often the code
is fine and only a stored number is stale: SpeechT5's attention reshapes to ``self.embed_dim``, Conditional-DETR's
cross-attention splits by ``self.num_attention_heads``. Freezing those groups keeps whole attention blocks at
full width; rewriting the number lets them prune.

How: the module that failed and its two enclosing modules are searched, innermost first. Their integer
attributes that equal (or divide) an old size of a tensor beneath them are candidates (ranked by
:func:`~graphpress.backends.size_attributes.propose_rules`); each is tried alone, then pairs of the best few,
in every module of the same class at once (repeated blocks). A candidate is kept when the model then runs, or
when the module that owns the attribute now finishes its forward (the run gets further; the next failure is
searched the same way). Whatever is kept must in the end run the whole model with the unpruned output shapes;
and the caller's ``accept`` checks its outputs against the pruned graph itself (:func:`graph_outputs`), since a wrong
number can run and compute something else (a candidate that runs wrong is undone and the search goes on).
Otherwise everything is undone and the groups freeze as before.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from ...backends.evaluate import flatten_outputs, submodule_stack
from ...backends.size_attributes import SizeRule, apply_rules, propose_rules, twin_rules, undo
from ...ir import Graph

__all__ = ["Attempt", "attempt", "repair_sizes", "graph_outputs", "agrees", "MAX_REPAIR_RUNS"]

#: Forward runs one repair may spend (each is a full forward on the example inputs).
MAX_REPAIR_RUNS = 16
_OWNER_DEPTH = 3  # the failing module and two enclosing ones
_PAIRED = 4  # pairs are formed among this many best candidates
_GRAPH_TOLERANCE = 1e-3


@dataclass
class Attempt:
    """One forward run: the outputs, or where it failed (module stack, outermost first) and the error."""

    outputs: list[torch.Tensor] | None
    where: list[str] = field(default_factory=list)
    error: BaseException | None = None
    done: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.outputs is not None


def attempt(module: nn.Module, inputs: tuple, kwargs: dict) -> Attempt:
    """Run ``module`` once, recording how far it got (completed forward calls per submodule)."""
    done: Counter = Counter()
    with submodule_stack(module, done) as stack, torch.no_grad():
        try:
            return Attempt(flatten_outputs(module(*inputs, **kwargs)), done=done)
        except Exception as error:  # noqa: BLE001 - any failure of the edited model is what a trial records
            return Attempt(None, list(stack), error, done)


def _owners(where: list[str]) -> list[str]:
    owners: list[str] = []
    for name in reversed(where):
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


def repair_sizes(original: nn.Module, edited: nn.Module, inputs: tuple, kwargs: dict, failed: Attempt,
                 accept: Callable[[list[torch.Tensor]], bool], max_runs: int = MAX_REPAIR_RUNS
                 ) -> tuple[list[SizeRule], Attempt]:
    """Rules that make ``edited`` (a pruned copy of ``original`` whose run ``failed``) run with outputs that
    ``accept`` takes, applied to it, and that run; or ``([], failed)`` with ``edited`` unchanged (module doc).
    A candidate that runs to the end with outputs ``accept`` refuses is undone and the search goes on: a
    number can be right for one reshape and wrong for another (a head count next to a width)."""
    kept: list[SizeRule] = []
    saved: dict[tuple[str, str], int] = {}
    current, runs = failed, 0
    while not current.ok and runs < max_runs:
        step: list[SizeRule] | None = None
        for owner in _owners(current.where):
            for chosen in _candidate_sets(propose_rules(original, edited, owner)):
                if runs >= max_runs:
                    break
                rules = [r for rule in chosen for r in (rule, *twin_rules(rule, original))]
                old = apply_rules(edited, rules)
                trial = attempt(edited, inputs, kwargs)
                runs += 1
                if trial.ok and accept(trial.outputs) or not trial.ok and trial.done[owner] > current.done[owner]:
                    step, current = rules, trial
                    for key, value in old.items():
                        saved.setdefault(key, value)
                    break
                undo(edited, old)
            if step is not None or runs >= max_runs:
                break
        if step is None:
            break
        kept += step
    if not current.ok:
        undo(edited, saved)
        return [], failed
    return kept, current


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
    if len(reference) != len(outputs):
        return False
    for want, got in zip(reference, outputs):
        want, got = want.float(), got.detach().float().cpu()
        if want.shape != got.shape:
            return False
        scale = float(want.abs().max()) if want.numel() else 0.0
        if want.numel() and float((want - got).abs().max()) > _GRAPH_TOLERANCE * max(scale, 1e-12):
            return False
    return True
