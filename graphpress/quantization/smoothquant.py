"""SmoothQuant (Xiao et al., 2022): move activation outliers into the weights so both fit in 8 bits.

Per input channel ``j`` of a foldable group of linears (see :mod:`.scaling`),
``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (``W_j`` over all consumers' column ``j``); inputs are divided by
``s`` (folded into the producer: the norm weight, or a preceding linear's rows) and weights multiplied by
it. The weights are then quantized (per channel, 8-bit by default) and the module quantizes its input per
token at run time (``act_bits=8``).
"""

from __future__ import annotations

import torch
from torch import nn

from graphpress.quantization.scaling import ScalingPair, fold_scales

__all__ = ["smoothing_scales", "smooth_pair"]

DEFAULT_ALPHA = 0.5


@torch.no_grad()
def smoothing_scales(block: nn.Module, pair: ScalingPair, input_max_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's ``s`` for a pair from the consumers' per-channel input ``max |x|``."""
    modules = dict(block.named_modules())
    weight_max = torch.stack([modules[name].weight.abs().amax(0).float() for name in pair.consumers]).amax(0)
    activation_max = input_max_abs.to(device=weight_max.device, dtype=torch.float32).clamp_min(1e-5)
    scales = activation_max.pow(alpha) / weight_max.clamp_min(1e-5).pow(1 - alpha)
    return scales.clamp_min(1e-5)


def smooth_pair(block: nn.Module, pair: ScalingPair, input_max_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Compute and fold the smoothing scales of one pair; returns them."""
    scales = smoothing_scales(block, pair, input_max_abs, alpha)
    fold_scales(block, pair, scales)
    return scales
