"""HQQ: calibration-free half-quadratic quantization (Badri & Shaji, 2023).

Round-to-nearest minimises the squared error of each weight against the grid fitted to min/max, which lets
a few outliers stretch the grid. HQQ instead minimises an ``l_p`` norm with ``p < 1`` (sparsity-promoting, so
outliers are allowed a large error) of ``W - dequant(quant(W))`` by optimising the zero point with a
half-quadratic split: an auxiliary error ``E`` is shrunk with the generalised soft-threshold, then the zero
point has a closed form. Scales stay at their min/max value, as in the reference implementation; the best
iterate (by ``l_p`` error) is kept.
"""

from __future__ import annotations

import torch

from graphpress.quantization.grid import (
    QuantizedWeight,
    dequantize_codes,
    fit_grid,
    pad_columns,
    quantize_codes,
    storage_group,
)

__all__ = ["hqq_quantize"]


def _shrink_lp(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    """Generalised soft-thresholding, the proximal operator of ``|x|^p`` for ``p < 1``."""
    return torch.sign(x) * torch.relu(x.abs() - (1.0 / beta) * x.abs().clamp_min(1e-8).pow(p - 1))


@torch.no_grad()
def hqq_quantize(weight: torch.Tensor, bits: int, group: int, sym: bool = False, *, p: float = 0.7,
                 beta: float = 10.0, kappa: float = 1.01, iterations: int = 20) -> QuantizedWeight:
    """HQQ of ``weight`` ``[N, K]``; symmetric grids keep their fixed zero, so only RTN applies then."""
    n, k = weight.shape
    g = storage_group(group, k)
    groups = pad_columns(weight.float(), g).reshape(n, -1, g)
    scale, zero = fit_grid(groups, bits, sym, integer_zero=False)  # HQQ optimises a float zero point
    if not sym:
        best_zero = zero.clone()
        best_error = torch.full_like(zero, float("inf"))
        for _ in range(iterations):
            codes = quantize_codes(groups, scale, zero, bits)
            error_lp = (groups - dequantize_codes(codes, scale, zero)).abs().pow(p).sum(-1)
            improved = error_lp < best_error
            best_error = torch.where(improved, error_lp, best_error)
            best_zero = torch.where(improved, zero, best_zero)
            sparse_error = _shrink_lp(groups - dequantize_codes(codes, scale, zero), beta, p)
            zero = (codes - (groups - sparse_error) / scale.unsqueeze(-1)).mean(-1)
            beta *= kappa
        zero = best_zero
    codes = quantize_codes(groups, scale, zero, bits).reshape(n, -1)
    return QuantizedWeight.from_codes(codes, scale, zero, bits, g, k)
