"""Wanda (Sun et al. 2023): prune by ``|W_ij| * ||X_j||_2``, compared within each output row.

The activation norm makes an input channel that carries large activations (LLM outlier features) keep its
weights even when they are small; comparing per output row keeps every output's sum balanced. No weight
update, so it costs one pass of statistics.
"""

from __future__ import annotations

import torch

from .masks import SparsityPattern, keep_mask

__all__ = ["wanda_scores", "wanda_prune"]


def wanda_scores(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """``|W| * ||X_j||_2`` in float32, ``input_norm`` being the per-input-channel L2 norm over tokens."""
    return weight.abs().float() * input_norm.to(device=weight.device, dtype=torch.float32).unsqueeze(0)


@torch.no_grad()
def wanda_prune(weight: torch.Tensor, input_norm: torch.Tensor, pattern: SparsityPattern) -> torch.Tensor:
    """``weight`` ``[out, in]`` with the lowest Wanda scores of each row (or each N:M run) zeroed."""
    mask = keep_mask(wanda_scores(weight, input_norm), pattern, per_row=True)
    return weight * mask.to(weight.dtype)
