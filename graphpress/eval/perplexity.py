"""Perplexity of a causal language model on token windows, the quality figure of EVAL.md.

Perplexity is ``exp`` of the mean next-token cross-entropy over *all* evaluated positions (each window
contributes ``seqlen - 1`` predictions), accumulated in float64 so that the order of batches does not
change the last digit.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

__all__ = ["perplexity", "window_losses"]


def _logits(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    output = model(input_ids=input_ids, use_cache=False)
    return output.logits if hasattr(output, "logits") else output[0]


@torch.no_grad()
def window_losses(
    model: Any,
    windows: torch.Tensor,
    *,
    batch_size: int = 4,
    progress: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """Summed next-token cross-entropy of each window, float64 ``[n_windows]``."""
    if windows.dim() != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be [n, seqlen>=2] token ids, got shape {tuple(windows.shape)}")
    device = next(model.parameters()).device
    totals = []
    for start in range(0, windows.shape[0], batch_size):
        batch = windows[start : start + batch_size].to(device)
        logits = _logits(model, batch)[:, :-1].float()
        targets = batch[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        totals.append(loss.view(batch.shape[0], -1).double().sum(dim=1).cpu())
        if progress is not None:
            progress(min(start + batch_size, windows.shape[0]), windows.shape[0])
    return torch.cat(totals)


def perplexity(
    model: Any,
    windows: torch.Tensor,
    *,
    batch_size: int = 4,
    progress: Optional[Callable[[int, int], None]] = None,
) -> float:
    """``exp(mean next-token CE)`` of ``model`` over every predicted position of ``windows`` ``[n, seqlen]``.

    ``progress(done, total)`` is called after each batch of windows.
    """
    was_training = model.training
    model.eval()
    try:
        losses = window_losses(model, windows, batch_size=batch_size, progress=progress)
    finally:
        model.train(was_training)
    positions = windows.shape[0] * (windows.shape[1] - 1)
    return math.exp(losses.sum().item() / positions)
