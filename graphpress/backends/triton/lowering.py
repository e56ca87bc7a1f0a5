"""Swapping a model's linear layers for :class:`TritonQuantLinear`, in place.

Two kinds of module are lowered: modules that already carry the packed format (``qweight``,
``scales``, ``zeros``, ``bits``, ``group``: e.g. what graphpress's quantization passes produce), and,
when a ``quantizer`` is given, plain ``nn.Linear`` layers, which it turns into that format first.
Afterwards :func:`chain_products` marks the products that directly consume another graphpress product's
output, which the batch-1 kernels then launch as programmatic dependents (``pdl.py``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from graphpress.backends.gated_mlp import GatedMLP
from graphpress.backends.triton.linear import TritonQuantLinear

__all__ = ["lower_linear_modules", "is_packed_quantized", "chain_products"]

_PACKED_ATTRIBUTES = ("qweight", "scales", "zeros", "bits", "group", "in_features", "out_features")


def is_packed_quantized(module: Any) -> bool:
    """Whether ``module`` exposes the packing.py format."""
    return all(hasattr(module, name) for name in _PACKED_ATTRIBUTES)


def lower_linear_modules(
    model: nn.Module,
    quantizer: Callable[[nn.Linear], Any] | None = None,
    skip: Iterable[str] = (),
    meta_dtype: torch.dtype | None = None,
) -> list[str]:
    """Replace every packed-quantized module (and every ``nn.Linear`` if ``quantizer`` is given) by a
    :class:`TritonQuantLinear`; modules whose qualified name contains an entry of ``skip`` are left alone.

    Returns the qualified names that were replaced.  The original weights are dropped as each module is
    swapped, so peak memory stays near one layer above the smaller of the two models.  Ends with
    :func:`chain_products` over the whole model.
    """
    skip = tuple(skip)
    replaced = []
    for name, module in list(model.named_modules()):
        if not name or any(s in name for s in skip):
            continue
        if is_packed_quantized(module):
            packed = module
        elif quantizer is not None and isinstance(module, nn.Linear):
            packed = quantizer(module)
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, TritonQuantLinear.from_quantized(packed, meta_dtype=meta_dtype))
        replaced.append(name)
    chain_products(model)
    return replaced


def chain_products(model: nn.Module) -> list[str]:
    """Set ``follows_product`` on every :class:`GatedMLP` down projection whose gate-up layer is a
    :class:`TritonQuantLinear` applying its activation in its own epilogue (no bias): nothing runs between
    the two products, so the down kernel can start during the gate-up kernel's tail.  Returns the names of
    the layers marked."""
    chained = []
    for name, module in model.named_modules():
        if not isinstance(module, GatedMLP):
            continue
        gate_up, down = module.gate_up, module.down
        if (isinstance(gate_up, TritonQuantLinear) and gate_up.gated and gate_up.bias is None
                and isinstance(down, TritonQuantLinear)):
            down.follows_product = True
            chained.append(f"{name}.down" if name else "down")
    return chained
