"""AWQ (Lin et al., 2023): protect salient input channels by scaling them up before quantization.

For each foldable group of linears (see :mod:`.scaling`), ``s = mean|x|^alpha`` normalised by
``sqrt(max s * min s)`` is searched over an ``alpha`` grid in ``[0, 1)``; the chosen ``alpha`` minimises the
output error of the group's linears, ``sum ||X (W - Q(W diag s) diag s^-1)^T||^2``. That error is computed
exactly from the Gram matrix ``G = X^T X`` of the calibration inputs as ``tr(dW G dW^T)``, which costs one
``[N, K] x [K, K]`` product per candidate instead of a pass over the tokens (the reference implementation
compares the outputs of the parent module; on the block's linears the criterion is the same up to the
non-linearities in between). ``1/s`` is then folded into the producer. Finally each linear's clipping
range is searched per group (shrink ratios 1.0 .. 0.5) by the group's own share of the output error.
"""

from __future__ import annotations

import torch
from torch import nn

from graphpress.quantization.grid import (
    QuantizedWeight,
    dequantize_codes,
    fake_quantize,
    fit_grid,
    pad_columns,
    quantize_codes,
    storage_group,
)
from graphpress.quantization.scaling import ScalingPair

__all__ = ["search_awq_scales", "awq_clip_quantize", "ALPHA_GRID", "SHRINK_GRID"]

ALPHA_GRID = tuple(i / 20 for i in range(20))
SHRINK_GRID = tuple(1.0 - i / 20 for i in range(11))


def _output_error(delta: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """``tr(delta G delta^T)``: the summed squared output error of a weight error ``delta`` [N, K]."""
    return ((delta @ gram) * delta).sum()


@torch.no_grad()
def search_awq_scales(block: nn.Module, pair: ScalingPair, mean_abs: torch.Tensor, gram: torch.Tensor,
                      bits: int, group: int, sym: bool, *, integer_zero: bool = True) -> tuple[float, torch.Tensor]:
    """Best ``(alpha, scales)`` for a pair, from the consumers' input mean ``|x|`` and Gram matrix."""
    modules = dict(block.named_modules())
    weight = torch.cat([modules[name].weight.float() for name in pair.consumers])
    gram = gram.to(device=weight.device, dtype=torch.float32)
    saliency = mean_abs.to(device=weight.device, dtype=torch.float32).clamp_min(1e-6)
    best = (float("inf"), 0.0, torch.ones_like(saliency))
    for alpha in ALPHA_GRID:
        s = saliency.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        restored = fake_quantize(weight * s, bits, group, sym, integer_zero=integer_zero) / s
        error = _output_error(restored - weight, gram).item()
        if error < best[0]:
            best = (error, alpha, s)
    return best[1], best[2]


@torch.no_grad()
def awq_clip_quantize(weight: torch.Tensor, gram: torch.Tensor, bits: int, group: int, sym: bool, *,
                      integer_zero: bool = True) -> QuantizedWeight:
    """Quantize ``weight`` [N, K] with the per-(row, group) range shrink that minimises each group's error
    ``dw_g G_gg dw_g^T`` (``G_gg`` the group's diagonal block of the input Gram matrix)."""
    n, k = weight.shape
    g = storage_group(group, k)
    groups = pad_columns(weight.float(), g).reshape(n, -1, g)
    n_groups = groups.shape[1]
    device = weight.device
    padded_gram = torch.zeros(n_groups * g, n_groups * g, device=device)
    padded_gram[:k, :k] = gram.to(device=device, dtype=torch.float32)
    blocks = torch.stack([padded_gram[i * g : (i + 1) * g, i * g : (i + 1) * g] for i in range(n_groups)])
    best_error = torch.full((n, n_groups), float("inf"), device=device)
    best_shrink = torch.ones(n, n_groups, device=device)
    for shrink in SHRINK_GRID:
        scale, zero = fit_grid(groups, bits, sym, shrink, integer_zero=integer_zero)
        delta = dequantize_codes(quantize_codes(groups, scale, zero, bits), scale, zero) - groups
        error = torch.einsum("nig,igh,nih->ni", delta, blocks, delta)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_shrink = torch.where(better, torch.full_like(best_shrink, shrink), best_shrink)
    return QuantizedWeight.round_to_nearest(weight, bits, group, sym, shrink=best_shrink, integer_zero=integer_zero)


