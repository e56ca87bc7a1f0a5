"""How many decoder layers a depth pass removes: from ``layers=N`` or from a parameter ``ratio``.

The issue's budgets are fractions of DECODER-LAYER parameters (embeddings and head excluded), so that
depth pruning, layer merging and width pruning are compared at the same size. A depth pass removes whole
layers, so a ratio becomes the nearest whole number of layers; the fraction actually removed is reported.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ...errors import OptionError

__all__ = ["parameter_count", "layers_to_remove"]


def parameter_count(modules: Sequence[nn.Module]) -> int:
    """Parameters held by ``modules`` (each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in module.parameters():
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel()
    return total


def layers_to_remove(pass_name: str, layers: Sequence[nn.Module], ratio: float | None, count: int | None) -> int:
    """Whole layers to remove: ``count`` as given, or the nearest to ``ratio`` of the layers' parameters."""
    if (ratio is None) == (count is None):
        raise OptionError(f"pass '{pass_name}' needs exactly one of ratio= (fraction of decoder-layer "
                          f"parameters) or layers= (a number of layers)")
    if count is None:
        mean_layer = parameter_count(layers) / len(layers)
        count = round(ratio * parameter_count(layers) / mean_layer)
    if count >= len(layers):
        raise OptionError(f"pass '{pass_name}' would remove {count} of {len(layers)} decoder layers; "
                          "at least one must stay")
    return count
