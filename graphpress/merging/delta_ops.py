"""The small parts merge methods are composed of: sparsify a delta, elect a sign, combine.

Every function works on a stack of per-model tensors of one parameter, shape ``[n_models, *shape]``,
in float32, and returns a new tensor (inputs are not modified). A method is a few of these in a row,
e.g. TIES = :func:`trim_to_top_magnitude` -> :func:`elect_sign` -> :func:`disjoint_mean`
(Yadav et al. 2023); DARE = :func:`drop_and_rescale` then either (Yu et al. 2023).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = [
    "trim_to_top_magnitude",
    "drop_and_rescale",
    "elect_sign",
    "disjoint_mean",
    "weighted_sum",
    "weighted_average",
    "slerp",
]


def _broadcast(weights: torch.Tensor, stacked: torch.Tensor) -> torch.Tensor:
    """Shape ``[n]`` weights as ``[n, 1, 1, ...]`` to scale a ``[n, *shape]`` stack."""
    return weights.reshape(-1, *([1] * (stacked.dim() - 1))).to(stacked.dtype)


def trim_to_top_magnitude(deltas: torch.Tensor, density: float) -> torch.Tensor:
    """Keep each model's ``density`` fraction of largest-magnitude entries, zero the rest.

    The cut is a per-model magnitude threshold (the k-th largest |delta|, k = ceil(density * numel));
    entries tied with the threshold are all kept, so slightly more than k may survive on ties.
    """
    flat = deltas.reshape(deltas.shape[0], -1)
    numel = flat.shape[1]
    keep = min(numel, max(1, math.ceil(density * numel)))
    if keep == numel:
        return deltas.clone()
    magnitudes = flat.abs()
    # kthvalue finds the k-th smallest, so the k-th largest is the (numel - k + 1)-th smallest.
    threshold = magnitudes.kthvalue(numel - keep + 1, dim=1, keepdim=True).values
    return (flat * (magnitudes >= threshold)).reshape(deltas.shape)


def drop_and_rescale(deltas: torch.Tensor, density: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """DARE: drop each entry with probability ``1 - density`` and scale survivors by ``1 / density``.

    The rescaling keeps each delta's expected value, which is why DARE can drop 90% of a fine-tune's
    delta and keep its behaviour. ``generators[i]`` draws model i's mask, so results are reproducible.
    """
    if density >= 1.0:
        return deltas.clone()
    kept = torch.stack(
        [torch.rand(delta.shape, generator=generator) < density for delta, generator in zip(deltas, generators)]
    )
    return deltas * kept / density


def elect_sign(deltas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TIES sign election: per entry, the sign of the weighted sum of deltas (the side with more mass)."""
    return torch.sign((deltas * _broadcast(weights, deltas)).sum(dim=0))


def disjoint_mean(deltas: torch.Tensor, weights: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Weighted mean over only the models whose (non-zero) delta agrees with the elected sign.

    Zeros left by trimming do not dilute the mean; an entry where no model agrees stays 0.
    """
    agrees = (torch.sign(deltas) == sign) & (deltas != 0)
    scaled_weights = _broadcast(weights, deltas) * agrees
    total = (deltas * scaled_weights).sum(dim=0)
    divisor = scaled_weights.sum(dim=0)
    return torch.where(
        divisor != 0, total / divisor.clamp_min(torch.finfo(divisor.dtype).tiny), torch.zeros_like(total)
    )


def weighted_sum(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i x_i`` (task arithmetic on deltas)."""
    return (stacked * _broadcast(weights, stacked)).sum(dim=0)


def weighted_average(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i x_i / sum_i w_i`` (a linear merge, a.k.a. model soup)."""
    return weighted_sum(stacked, weights) / weights.sum()


def slerp(first: torch.Tensor, second: torch.Tensor, t: float, parallel_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation from ``first`` (t=0) to ``second`` (t=1), treating each tensor as one vector.

    It follows the arc between the two directions instead of the chord, so the merged tensor keeps the
    norm of its parents where a plain average would shrink it. Nearly parallel (or zero) vectors have no
    well-defined arc, and fall back to linear interpolation.
    """
    first_flat, second_flat = first.reshape(-1), second.reshape(-1)
    norms = first_flat.norm() * second_flat.norm()
    if norms == 0:
        return torch.lerp(first, second, t)
    cosine = torch.clamp((first_flat @ second_flat) / norms, -1.0, 1.0)
    if cosine.abs() > parallel_threshold:
        return torch.lerp(first, second, t)
    angle = torch.arccos(cosine)
    sin_angle = torch.sin(angle)
    first_scale = torch.sin((1.0 - t) * angle) / sin_angle
    second_scale = torch.sin(t * angle) / sin_angle
    return first_scale * first + second_scale * second
