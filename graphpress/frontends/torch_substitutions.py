"""Tracing-time substitutions: forwards that replace a module's own forward while torch.export traces.

Some modules compute their result with data-dependent control flow that ``torch.export`` can't follow or
that the IR has no use for: a mixture-of-experts layer loops over the experts that were picked
(``nonzero``/``where`` give sizes known only at run time), or sorts tokens by expert for a grouped GEMM.
A substitution gives such a module a forward that computes the *same numbers* with static shapes, for the
duration of one trace only. The user's module is never changed: the substituted forward is an instance
attribute set on the working copy and deleted when the trace ends, so the module a backend hands back runs
its own forward; only the IR (and files emitted from it, such as ONNX) carry the substituted formulation.

Substitutions are registered per *kind of module*, by a predicate on its structure, never per model::

    @register_trace_substitution(lambda m: ...)
    def static_forward(module, *args, **kwargs): ...
"""

from __future__ import annotations

import importlib
import types
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

__all__ = ["TraceForward", "register_trace_substitution", "substitution_for", "substituted_forwards"]

TraceForward = Callable[..., Any]
"""``forward(module, *args, **kwargs)``: called as a bound method of the module it replaces."""

_SUBSTITUTIONS: list[tuple[Callable[[torch.nn.Module], bool], TraceForward]] = []
_MODULES = ("graphpress.frontends.torch_moe",)  # imported lazily: they register themselves
_loaded = False


def register_trace_substitution(predicate: Callable[[torch.nn.Module], bool]) -> Callable[[TraceForward],
                                                                                           TraceForward]:
    """Register the decorated forward for every module ``predicate`` accepts (first match wins)."""

    def register(forward: TraceForward) -> TraceForward:
        _SUBSTITUTIONS.append((predicate, forward))
        return forward

    return register


def substitution_for(module: torch.nn.Module) -> TraceForward | None:
    """The forward that replaces ``module``'s while tracing, or None."""
    global _loaded
    if not _loaded:
        for name in _MODULES:
            importlib.import_module(name)
        _loaded = True
    for predicate, forward in _SUBSTITUTIONS:
        if predicate(module):
            return forward
    return None


@contextmanager
def substituted_forwards(model: torch.nn.Module) -> Iterator[list[str]]:
    """Within the block, every submodule with a substitution runs it; yields their paths."""
    patched: list[tuple[torch.nn.Module, bool, Any]] = []
    paths: list[str] = []
    try:
        for path, module in model.named_modules():
            forward = substitution_for(module)
            if forward is None:
                continue
            had_own = "forward" in module.__dict__
            patched.append((module, had_own, module.__dict__.get("forward")))
            module.forward = types.MethodType(forward, module)
            paths.append(path)
        yield paths
    finally:
        for module, had_own, previous in reversed(patched):
            if had_own:
                module.forward = previous
            else:
                module.__dict__.pop("forward", None)
