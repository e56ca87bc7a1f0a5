"""Magnitude pruning: zero the weights of smallest absolute value (the calibration-free baseline).

Unstructured magnitude pruning compares weights across the whole layer, as in Han et al. and the baselines
of the Wanda and SparseGPT papers; N:M compares within each run of M inputs.
"""

from __future__ import annotations

import torch

from .masks import SparsityPattern, keep_mask

__all__ = ["magnitude_prune"]


@torch.no_grad()
def magnitude_prune(weight: torch.Tensor, pattern: SparsityPattern) -> torch.Tensor:
    """``weight`` ``[out, in]`` with its lowest-magnitude entries zeroed to realise ``pattern``."""
    mask = keep_mask(weight.abs().float(), pattern, per_row=False)
    return weight * mask.to(weight.dtype)
