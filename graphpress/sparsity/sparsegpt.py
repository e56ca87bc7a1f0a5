"""SparseGPT (Frantar & Alistarh 2023): one-shot pruning with an optimal-brain-surgeon weight update.

With ``H = 2 X^T X / n`` (damped by 1% of its mean diagonal) and ``U`` the upper Cholesky factor of
``H^-1``, columns are visited left to right in blocks of 128. Each block picks its mask by
``w^2 / U_jj^2`` (unstructured: over the whole block; N:M: per row, each M columns), and every pruned
weight's error ``(w - 0) / U_ii`` is propagated into the not-yet-visited columns, ``W[:, i:] -= err *
U[i, i:]``, so the remaining weights compensate for what was removed. Later blocks get the accumulated
update lazily, in one matrix product per block.
"""

from __future__ import annotations

import torch

from ..errors import PassError
from .masks import SparsityPattern, keep_mask

__all__ = ["sparsegpt_prune", "inverse_hessian_factor"]


def inverse_hessian_factor(hessian: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, dead)``: the upper Cholesky factor of the damped ``H^-1`` (float64) and the never-active inputs.

    Inputs that were always zero get ``H_ii = 1`` (their weights are free to zero). If the damped matrix is
    still not positive definite, damping is increased tenfold up to three times before giving up.
    """
    h = hessian.to(torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    level = damp * float(torch.diag(h).mean())
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    for _ in range(4):
        factor, info = torch.linalg.cholesky_ex(h + level * eye)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(factor)
            return torch.linalg.cholesky(inverse, upper=True), dead
        level *= 10.0
    raise PassError("sparsegpt: the input Hessian is not positive definite even with heavy damping; "
                    "give more calibration tokens or use method=wanda")


@torch.no_grad()
def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, pattern: SparsityPattern, *,
                    block_size: int = 128, damp: float = 0.01) -> torch.Tensor:
    """Pruned and OBS-updated copy of ``weight`` ``[out, in]`` for inputs with Hessian ``hessian`` ``[in, in]``."""
    work = weight.detach().to(torch.float32).clone()
    factor, dead = inverse_hessian_factor(hessian.to(work.device), damp)
    factor = factor.to(torch.float32)
    work[:, dead] = 0.0
    columns = work.shape[1]
    m = pattern.n_of_m[1] if pattern.is_n_of_m else 0
    if m and block_size % m:
        block_size = max(m, block_size // m * m)  # an N:M run must never straddle two blocks
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        block = work[:, start:end].clone()
        u = factor[start:end, start:end]
        diag = torch.diag(u)
        errors = torch.zeros_like(block)
        if not m:
            # Cumulative rounding gives the layer exactly round(ratio * numel) zeros over all blocks.
            rows = block.shape[0]
            count = round(pattern.ratio * rows * end) - round(pattern.ratio * rows * start)
            block_pattern = pattern.with_ratio(count / block.numel())
            prune = ~keep_mask(block.square() / diag.square().unsqueeze(0), block_pattern, per_row=False)
        else:
            prune = torch.zeros_like(block, dtype=torch.bool)
        for i in range(end - start):
            if m and i % m == 0:
                scores = block[:, i:i + m].square() / diag[i:i + m].square().unsqueeze(0)
                prune[:, i:i + m] = ~keep_mask(scores, pattern, per_row=True)
            column = block[:, i]
            kept = torch.where(prune[:, i], torch.zeros_like(column), column)
            error = (column - kept) / diag[i]
            block[:, i:] -= error.unsqueeze(1) * u[i, i:].unsqueeze(0)
            block[:, i] = kept
            errors[:, i] = error
        work[:, start:end] = block
        work[:, end:] -= errors @ factor[start:end, end:]
    return work.to(weight.dtype)
