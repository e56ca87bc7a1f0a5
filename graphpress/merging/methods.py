"""The built-in merge methods, each composed from the parts in :mod:`graphpress.merging.delta_ops`.

Weights default to 1 per model. ``linear`` and ``slerp`` interpolate the models themselves (the base
is used only to validate and to supply config and tokenizer); the others merge deltas from the base
and scale the result by ``lambda_``. With two models, ``linear`` equals ``task_arithmetic`` with
``lambda_=0.5``.
"""

from __future__ import annotations

import torch

from graphpress.merging.delta_ops import (
    disjoint_mean,
    drop_and_rescale,
    elect_sign,
    slerp,
    trim_to_top_magnitude,
    weighted_average,
    weighted_sum,
)
from graphpress.merging.registry import MergeContext, merge_method

__all__ = ["linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "slerp_pair"]


@merge_method("linear", on_deltas=False, normalizes_weights=True)
def linear(models: torch.Tensor, weights: torch.Tensor, context: MergeContext) -> torch.Tensor:
    """Weighted average of the models: sum_i w_i theta_i / sum_i w_i."""
    return weighted_average(models, weights)


@merge_method("task_arithmetic", on_deltas=True)
def task_arithmetic(deltas: torch.Tensor, weights: torch.Tensor, context: MergeContext) -> torch.Tensor:
    """Task arithmetic: base + lambda * sum_i w_i (theta_i - base)."""
    return weighted_sum(deltas, weights)


@merge_method("ties", on_deltas=True, needs_density=True)
def ties(deltas: torch.Tensor, weights: torch.Tensor, context: MergeContext) -> torch.Tensor:
    """TIES: trim each delta to its top-density magnitudes, elect the sign by mass, disjoint mean."""
    trimmed = trim_to_top_magnitude(deltas, context.density)
    return disjoint_mean(trimmed, weights, elect_sign(trimmed, weights))


@merge_method("dare_ties", on_deltas=True, needs_density=True)
def dare_ties(deltas: torch.Tensor, weights: torch.Tensor, context: MergeContext) -> torch.Tensor:
    """DARE drop-and-rescale of each delta, then TIES sign election and disjoint mean."""
    dropped = drop_and_rescale(deltas, context.density, context.generators(len(deltas)))
    return disjoint_mean(dropped, weights, elect_sign(dropped, weights))


@merge_method("dare_linear", on_deltas=True, needs_density=True)
def dare_linear(deltas: torch.Tensor, weights: torch.Tensor, context: MergeContext) -> torch.Tensor:
    """DARE drop-and-rescale of each delta, then task arithmetic: base + lambda * sum_i w_i dare(delta_i)."""
    return weighted_sum(drop_and_rescale(deltas, context.density, context.generators(len(deltas))), weights)


@merge_method("slerp", on_deltas=False, model_count=2, normalizes_weights=True)
def slerp_pair(models: torch.Tensor, weights: torch.Tensor, context: MergeContext) -> torch.Tensor:
    """Spherical interpolation of exactly two models at t = w_2 / (w_1 + w_2) (0.5 by default)."""
    t = float(weights[1] / weights.sum())
    return slerp(models[0], models[1], t)
