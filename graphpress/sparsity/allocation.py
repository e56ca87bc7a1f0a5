"""Layer-adaptive sparsity ratios with the overall ratio of a uniform allocation.

Layers of an LLM are not equally prunable. Two allocations redistribute a global ratio ``r``:

* **OWL** (Yin et al. 2024, outlier-weighted layerwise sparsity): a block's *outlier fraction* ``D`` is the
  share of its Wanda scores ``|W_ij| ||X_j||`` above ``M`` times the block mean (``M = 5``). Blocks with more
  outliers are pruned less: ``s_b = r - 2*lam*(D~_b - mean D~)``, ``D~`` min-max normalised, ``lam = 0.08``.
* **LAMP** (Lee et al. 2021): each weight's score ``w_u^2 / sum_{v >= u} w_v^2`` (the layer's weights sorted
  by increasing importance) is comparable across layers; one global threshold prunes a fraction ``r`` of
  all weights, and the share it removes from each layer becomes that layer's ratio.

Both are parameter-weighted so that ``sum s_l n_l / sum n_l = r``; the tests check the realised overall
ratio within 0.5%.
"""

from __future__ import annotations

from typing import Mapping

import torch

__all__ = ["owl_block_ratios", "outlier_fraction", "lamp_ratios", "whole_weight_ratios"]

_MAX_RATIO = 0.99  # never empty a layer completely
_LAMP_SAMPLES = 1 << 16  # sorted LAMP scores kept per layer for the threshold search


def outlier_fraction(scores: list[torch.Tensor], threshold_multiple: float = 5.0) -> float:
    """Share of all entries of ``scores`` (one block's Wanda score matrices) above ``M`` x their mean."""
    total = sum(s.numel() for s in scores)
    mean = sum(float(s.double().sum()) for s in scores) / total
    return sum(int((s > threshold_multiple * mean).sum()) for s in scores) / total


def owl_block_ratios(outliers: Mapping[str, float], sizes: Mapping[str, int], ratio: float,
                     spread: float = 0.08) -> dict[str, float]:
    """Per-block ratios from outlier fractions; ``sizes`` (parameters per block) weight the mean."""
    names = list(outliers)
    values = torch.tensor([outliers[n] for n in names], dtype=torch.float64)
    span = float(values.max() - values.min())
    normalised = (values - values.min()) / span if span > 0 else torch.zeros_like(values)
    weights = torch.tensor([float(sizes[n]) for n in names], dtype=torch.float64)
    shift = 2.0 * spread * normalised
    ratios = ratio - (shift - (shift * weights).sum() / weights.sum())
    return {n: float(r) for n, r in zip(names, ratios.clamp(0.0, _MAX_RATIO))}


def _sorted_lamp_scores(importance: torch.Tensor) -> torch.Tensor:
    """LAMP scores of one layer in increasing order, subsampled to at most ``_LAMP_SAMPLES`` entries."""
    squared = importance.detach().double().flatten().square().sort().values
    tail_sums = squared.flip(0).cumsum(0).flip(0)  # sum over v >= u
    scores = squared / tail_sums.clamp_min(torch.finfo(torch.float64).tiny)
    stride = max(1, scores.numel() // _LAMP_SAMPLES)
    return scores[::stride]


def lamp_ratios(importances: Mapping[str, torch.Tensor], ratio: float) -> dict[str, float]:
    """Per-layer ratios from LAMP scores of ``importances`` (|W| or Wanda scores), one global threshold."""
    sorted_scores = {name: _sorted_lamp_scores(imp) for name, imp in importances.items()}
    sizes = {name: imp.numel() for name, imp in importances.items()}
    total = sum(sizes.values())

    def pruned_fractions(threshold: float) -> dict[str, float]:
        return {name: min(_MAX_RATIO, int(torch.searchsorted(s, torch.tensor(threshold, dtype=s.dtype,
                                                                            device=s.device))) / s.numel())
                for name, s in sorted_scores.items()}

    # LAMP scores lie in (0, 1]; bisect the global threshold on a log scale.
    low, high = -60.0, 0.0
    for _ in range(80):
        middle = (low + high) / 2
        fractions = pruned_fractions(2.0 ** middle)
        overall = sum(fractions[n] * sizes[n] for n in sizes) / total
        low, high = (middle, high) if overall < ratio else (low, middle)
    fractions = pruned_fractions(2.0 ** high)
    overall = sum(fractions[n] * sizes[n] for n in sizes) / total
    # The threshold search is exact only up to the subsampling; a common factor closes the last gap.
    return {n: min(_MAX_RATIO, f * ratio / overall) for n, f in fractions.items()} if overall else fractions


def whole_weight_ratios(ratios: Mapping[str, float], sizes: Mapping[str, int]) -> dict[str, float]:
    """Adjust per-layer ratios so each prunes a whole number of weights and together they hit the total.

    A layer of ``n`` weights at ratio ``r`` can only drop ``round(r * n)`` of them; on narrow layers those
    roundings add up to a visible miss of the overall ratio. Largest-remainder rounding gives every layer
    ``floor`` or ``ceil`` of its share and the sum ``round(sum r_l n_l)``, so the realised overall ratio is
    the requested one to within one weight.
    """
    shares = {name: ratios[name] * sizes[name] for name in ratios}
    counts = {name: int(share) for name, share in shares.items()}
    missing = round(sum(shares.values())) - sum(counts.values())
    by_remainder = sorted(shares, key=lambda name: shares[name] - counts[name], reverse=True)
    for name in by_remainder[:max(0, missing)]:
        if counts[name] < sizes[name] - 1:
            counts[name] += 1
    return {name: counts[name] / sizes[name] if sizes[name] else 0.0 for name in ratios}
