"""One registry of passes, filled by a decorator, so that authors add a pass without touching the core.

    @register_pass
    class MyPass(Pass):
        name = "my-pass"
        ...
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from ..errors import PipelineError
from .base import Pass

__all__ = ["register_pass", "unregister_pass", "get_pass_class", "create_pass", "list_passes", "load_builtin_passes"]

_REGISTRY: dict[str, type[Pass]] = {}
_BUILTIN_MODULES = (
    "graphpress.passes.cleanup",
    "graphpress.passes.fold_bn",
    "graphpress.passes.fold_affine",
    "graphpress.passes.fold_linear",
    "graphpress.passes.fuse_siblings",
    "graphpress.passes.depth",
    "graphpress.passes.prune",
    "graphpress.passes.quantize",
    "graphpress.passes.lower_triton",
    "graphpress.passes.sparsify",
)
_OPTIONAL_MODULES: tuple[str, ...] = ()

P = TypeVar("P", bound=type[Pass])


def register_pass(cls: P) -> P:
    """Class decorator: make ``cls`` available by ``cls.name`` in pipelines and the CLI."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} needs a non-empty `name` to be registered")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise TypeError(f"pass name '{cls.name}' is taken by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_pass(name: str) -> None:
    """Remove a pass from the registry (for tests and notebooks that register throwaway passes)."""
    _REGISTRY.pop(name, None)


def load_builtin_passes() -> None:
    for module in _BUILTIN_MODULES + _OPTIONAL_MODULES:
        importlib.import_module(module)


def get_pass_class(name: str) -> type[Pass]:
    load_builtin_passes()
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise PipelineError(
            f"unknown pass '{name}'.{hint} Run `graphpress passes` to list them."
        ) from None


def create_pass(name: str, **options: Any) -> Pass:
    return get_pass_class(name)(**options)


def list_passes() -> list[type[Pass]]:
    """Every registered pass class, sorted by name."""
    load_builtin_passes()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
