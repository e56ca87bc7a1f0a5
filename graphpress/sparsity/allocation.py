"""Layer-adaptive sparsity ratios with the overall ratio of a uniform allocation.

Layers of an LLM are not equally prunable. Two allocations redistribute a global ratio ``r``:

* **OWL** (Yin et al. 2024, outlier-weighted layerwise sparsity; reference code ``luuyin/OWL``,
  ``lib/prune_all.py``): a decoder block's *outlier fraction* ``D`` (its layerwise outlier distribution, LOD)
  is the share of the Wanda scores ``|W_ij| ||X_j||`` of *all* its linears, concatenated, that lie above ``M``
  times their common mean (``M = 5``), measured on the dense model. Every linear of a block gets the block's
  ratio. Blocks with more outliers are pruned less: ``s_b = r - (2 lam D~_b - mean(2 lam D~))`` with ``D~``
  min-max normalised to ``[0, 1]`` and ``lam = 0.08``, so ratios span ``[r - lam, r + lam]`` around ``r``. The
  reference takes the plain mean over blocks; here the mean is weighted by parameters so that the realised
  overall ratio is exactly ``r`` (the two agree when all blocks have the same size, as in LLaMA-like models).
* **LAMP** (Lee et al. 2021; reference code ``jaeho-lee/layer-adaptive-sparsity``, ``tools/pruners.py``): each
  weight's score ``w_u^2 / sum_{v >= u} w_v^2`` (the layer's weights sorted by increasing magnitude) is
  comparable across layers; one global threshold prunes a fraction ``r`` of all weights, and the share it
  removes from each layer becomes that layer's ratio. The scores are magnitude scores, as in the paper; only
  the per-layer ratios are taken from LAMP, the pruning method then chooses the mask within each layer.

Ratios are kept in ``[0, 0.99]`` and, when that bound cuts a layer, the others absorb the difference
(:func:`rebalance`), so that ``sum s_l n_l / sum n_l = r`` holds in every case.
"""

from __future__ import annotations

from typing import Mapping

import torch

__all__ = ["owl_block_ratios", "outlier_fraction", "lamp_ratios", "rebalance", "whole_weight_ratios"]

_MAX_RATIO = 0.99  # never empty a layer completely
_LAMP_SAMPLES = 1 << 16  # sorted LAMP scores kept per layer for the threshold search


def outlier_fraction(scores: list[torch.Tensor], threshold_multiple: float = 5.0) -> float:
    """Share of all entries of ``scores`` (one block's Wanda score matrices) above ``M`` x their mean."""
    total = sum(s.numel() for s in scores)
    mean = sum(float(s.double().sum()) for s in scores) / total
    return sum(int((s > threshold_multiple * mean).sum()) for s in scores) / total


def rebalance(ratios: Mapping[str, float], sizes: Mapping[str, int], ratio: float,
              high: float = _MAX_RATIO) -> dict[str, float]:
    """``ratios`` clamped to ``[0, high]`` and shifted by a common offset so their size-weighted mean is ``ratio``.

    The offset is found by bisection (the weighted mean of the clamped, shifted ratios grows monotonically with
    it), so layers the bounds cut keep their bound and the others absorb the difference.
    """
    names = list(ratios)
    values = torch.tensor([float(ratios[n]) for n in names], dtype=torch.float64)
    weights = torch.tensor([float(sizes[n]) for n in names], dtype=torch.float64)
    if not names or float(weights.sum()) == 0.0:
        return {n: float(v) for n, v in zip(names, values)}
    target = min(max(ratio, 0.0), high)

    def mean(offset: float) -> float:
        return float(((values + offset).clamp(0.0, high) * weights).sum() / weights.sum())

    low_offset, high_offset = -1.0 - float(values.max()), 1.0 - float(values.min())
    for _ in range(100):
        middle = (low_offset + high_offset) / 2
        low_offset, high_offset = (middle, high_offset) if mean(middle) < target else (low_offset, middle)
    shifted = (values + (low_offset + high_offset) / 2).clamp(0.0, high)
    return {n: float(v) for n, v in zip(names, shifted)}


def owl_block_ratios(outliers: Mapping[str, float], sizes: Mapping[str, int], ratio: float,
                     spread: float = 0.08) -> dict[str, float]:
    """Per-block ratios from outlier fractions: more outliers, lower ratio; ``sizes`` weight the mean.

    ``spread`` is OWL's ``lambda``: the normalised outlier fractions ``D~`` in ``[0, 1]`` become a shift
    ``2 * lambda * D~`` that is centred (size-weighted) and subtracted from ``ratio``.
    """
    names = list(outliers)
    values = torch.tensor([outliers[n] for n in names], dtype=torch.float64)
    span = float(values.max() - values.min())
    normalised = (values - values.min()) / span if span > 0 else torch.zeros_like(values)
    weights = torch.tensor([float(sizes[n]) for n in names], dtype=torch.float64)
    shift = 2.0 * spread * normalised
    ratios = ratio - (shift - (shift * weights).sum() / weights.sum())
    return rebalance({n: float(r) for n, r in zip(names, ratios)}, sizes, ratio)


def _sorted_lamp_scores(importance: torch.Tensor) -> torch.Tensor:
    """LAMP scores of one layer in increasing order, subsampled to at most ``_LAMP_SAMPLES`` entries."""
    squared = importance.detach().double().flatten().square().sort().values
    tail_sums = squared.flip(0).cumsum(0).flip(0)  # sum over v >= u
    scores = squared / tail_sums.clamp_min(torch.finfo(torch.float64).tiny)
    stride = max(1, scores.numel() // _LAMP_SAMPLES)
    return scores[::stride].contiguous()  # searchsorted wants contiguous boundaries


def lamp_ratios(importances: Mapping[str, torch.Tensor], ratio: float) -> dict[str, float]:
    """Per-layer ratios from LAMP scores of ``importances`` (the weights, or ``|W|``), one global threshold.

    Only the magnitudes matter (the scores square them). The paper scores weights; :func:`sparsify_model`
    passes ``|W|`` whatever the method.
    """
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
    # The threshold search is exact only up to the subsampling; a common offset closes the last gap.
    return rebalance(fractions, sizes, ratio)


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
