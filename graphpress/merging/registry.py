"""The one registry of merge methods, and the decorator that adds a method in a few lines.

After mergekit's design: a method is a small function over one parameter's stacked tensors, declared
with :func:`merge_method`. The registry does the rest once for all methods: loading, validation,
the float32 upcast, turning models into deltas from the base and back (``base + lambda * combined``),
seeding, and casting to the base's dtype. An author writes only the arithmetic::

    @merge_method("ties", on_deltas=True, needs_density=True)
    def ties(deltas, weights, context):
        trimmed = trim_to_top_magnitude(deltas, context.density)
        return disjoint_mean(trimmed, weights, elect_sign(trimmed, weights))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch

from graphpress.errors import OptionError

__all__ = ["MergeContext", "MergeMethod", "merge_method", "get_merge_method", "available_merge_methods"]


@dataclass(frozen=True)
class MergeContext:
    """What a method may know besides the tensors: the parameter's name and the user's options."""

    tensor_name: str
    density: float | None
    seed: int

    def generator(self, model_index: int) -> torch.Generator:
        """A generator seeded by (seed, tensor name, model index): the same draw whatever the merge order."""
        digest = hashlib.sha256(f"{self.seed}/{self.tensor_name}/{model_index}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))

    def generators(self, count: int) -> list[torch.Generator]:
        return [self.generator(index) for index in range(count)]


CombineFunction = Callable[[torch.Tensor, torch.Tensor, MergeContext], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    """A registered method: ``combine(stacked, weights, context)`` plus how the registry should call it.

    ``on_deltas``: ``stacked`` holds ``model_i - base`` and the result is ``base + lambda * combined``;
    otherwise ``stacked`` holds the models themselves and the result is used as is.
    ``model_count``: the exact number of models the method takes (None: any number from one).
    ``normalizes_weights``: the method divides by the sum of the weights, which must then not be 0.
    """

    name: str
    combine: CombineFunction
    on_deltas: bool
    needs_density: bool
    model_count: int | None
    normalizes_weights: bool
    description: str

    def check_options(self, weights: torch.Tensor, density: float | None) -> None:
        """Raise :class:`OptionError` for options this method cannot work with (one weight per model)."""
        model_count = len(weights)
        if self.model_count is not None and model_count != self.model_count:
            raise OptionError(f"method '{self.name}' merges exactly {self.model_count} models, got {model_count}")
        if model_count < 1:
            raise OptionError(f"method '{self.name}' needs at least one model to merge")
        if self.needs_density and density is None:
            raise OptionError(f"method '{self.name}' needs density (the fraction of each delta kept), e.g. 0.5")
        if density is not None and not 0.0 < density <= 1.0:
            raise OptionError(f"density must be in (0, 1], got {density}")
        if self.normalizes_weights and weights.sum() == 0:
            raise OptionError(f"method '{self.name}' divides by the sum of the weights, which is 0")

    def apply(
        self,
        base: torch.Tensor,
        models: list[torch.Tensor],
        weights: torch.Tensor,
        context: MergeContext,
        lambda_: float,
    ) -> torch.Tensor:
        """Merge one parameter; returns a tensor of the base's dtype and shape."""
        if not base.dtype.is_floating_point:
            return base  # integer buffers (position ids, masks) are structural, not learned: keep the base's
        base32 = base.to(torch.float32)
        stacked = torch.stack([model.to(torch.float32) for model in models])
        if self.on_deltas:
            merged = base32 + lambda_ * self.combine(stacked - base32, weights, context)
        else:
            merged = self.combine(stacked, weights, context)
        return merged.to(base.dtype)


_METHODS: dict[str, MergeMethod] = {}


def merge_method(
    name: str,
    *,
    on_deltas: bool,
    needs_density: bool = False,
    model_count: int | None = None,
    normalizes_weights: bool = False,
) -> Callable[[CombineFunction], CombineFunction]:
    """Register ``combine`` under ``name``; the function's docstring becomes the method's description."""

    def register(combine: CombineFunction) -> CombineFunction:
        if name in _METHODS:
            raise ValueError(f"merge method '{name}' is registered twice")
        description = (combine.__doc__ or "").strip().splitlines()[0] if combine.__doc__ else ""
        _METHODS[name] = MergeMethod(
            name, combine, on_deltas, needs_density, model_count, normalizes_weights, description
        )
        return combine

    return register


def get_merge_method(name: str) -> MergeMethod:
    """The method registered as ``name``; :class:`OptionError` lists the known ones otherwise."""
    _load_builtin_methods()
    try:
        return _METHODS[name]
    except KeyError:
        raise OptionError(f"unknown merge method '{name}'; known: {', '.join(sorted(_METHODS))}") from None


def available_merge_methods() -> dict[str, str]:
    """Registered method names with their one-line descriptions."""
    _load_builtin_methods()
    return {name: _METHODS[name].description for name in sorted(_METHODS)}


def _load_builtin_methods() -> None:
    # Imported here, not at the top: methods.py imports this module for the decorator.
    import graphpress.merging.methods  # noqa: F401
