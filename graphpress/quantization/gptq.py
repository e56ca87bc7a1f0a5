"""GPTQ (Frantar et al., 2022): quantize columns one at a time, pushing each error onto the columns left.

With ``H = 2/n X^T X`` the Hessian of the layer's squared output error, quantizing column ``i`` to ``q`` and
updating the remaining columns by ``-(w_i - q) / U_ii * U[i, i:]`` (``U`` the upper Cholesky factor of
``H^-1``) minimises the output error given the columns already fixed. Details follow the reference code:
dead inputs (``H_ii = 0``) get ``H_ii = 1`` and zero weight, ``damp * mean(diag H)`` is added to the diagonal,
updates are applied lazily per block of columns, and the grid of each group is refit when the sweep enters
it (the block is a multiple of the group, so a group never straddles blocks).

``act_order`` sweeps columns by decreasing ``H_ii``. The storage format has contiguous groups (no ``g_idx``),
so with act_order the group grids are fitted once up front on the original weights ("static groups").
"""

from __future__ import annotations

import torch

from graphpress.quantization.grid import QuantizedWeight, fit_grid, pad_columns, storage_group

__all__ = ["gptq_quantize"]


def _inverse_cholesky_upper(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    h = hessian.double().clone()
    diagonal = torch.arange(h.shape[0], device=h.device)
    h[diagonal, diagonal] += damp * h.diagonal().mean()
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True).float()


@torch.no_grad()
def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, bits: int, group: int, sym: bool = False, *,
                  damp: float = 0.01, act_order: bool = False, block_size: int = 128,
                  integer_zero: bool = True) -> QuantizedWeight:
    """GPTQ of ``weight`` ``[N, K]`` given ``hessian`` ``[K, K]`` (rows may stack several linears), on one thread.

    The sweep is thousands of tiny vector operations; on a busy CPU, waking a second thread for each costs
    far more than it saves (measured: 0.12 s on one thread vs 8 s on two for a 960x576 weight).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _gptq(weight, hessian, bits, group, sym, damp=damp, act_order=act_order, block_size=block_size,
                     integer_zero=integer_zero)
    finally:
        torch.set_num_threads(threads)


def _gptq(weight: torch.Tensor, hessian: torch.Tensor, bits: int, group: int, sym: bool, *, damp: float,
          act_order: bool, block_size: int, integer_zero: bool) -> QuantizedWeight:
    n, k = weight.shape
    g = storage_group(group, k)
    w = pad_columns(weight.float(), g).clone()
    kp = w.shape[1]
    device = w.device  # the sweep runs where the weight lives (a GPU makes it ~100x faster)
    h = torch.eye(kp, dtype=torch.float64, device=device)  # padding columns: dead inputs, no error to spread
    h[:k, :k] = hessian.to(device=device, dtype=torch.float64)
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    n_groups = kp // g
    static_scale = static_zero = None
    if act_order:
        static_scale, static_zero = fit_grid(w.reshape(n, n_groups, g), bits, sym, integer_zero=integer_zero)
        order = torch.argsort(h.diagonal(), descending=True)
    else:
        order = torch.arange(kp, device=device)
    w, h = w[:, order], h[order][:, order]
    u = _inverse_cholesky_upper(h, damp)
    maxq = 2**bits - 1
    block = max(block_size // g, 1) * g if g <= block_size else g
    codes = torch.zeros_like(w)
    scales = torch.zeros(n, n_groups, device=device)
    zeros = torch.zeros(n, n_groups, device=device)
    for start in range(0, kp, block):
        end = min(start + block, kp)
        w_block = w[:, start:end].clone()
        errors = torch.zeros_like(w_block)
        u_block = u[start:end, start:end]
        for i in range(end - start):
            column = start + i
            group_index = int(order[column]) // g
            if static_scale is not None:
                scale, zero = static_scale[:, group_index], static_zero[:, group_index]
            elif column % g == 0:
                scale, zero = fit_grid(w_block[:, i : i + g], bits, sym, integer_zero=integer_zero)
                scales[:, group_index], zeros[:, group_index] = scale, zero
            q = torch.clamp(torch.round(w_block[:, i] / scale + zero), 0, maxq)
            codes[:, column] = q
            error = (w_block[:, i] - (q - zero) * scale) / u_block[i, i]
            w_block[:, i:] -= error.unsqueeze(1) * u_block[i, i:].unsqueeze(0)
            errors[:, i] = error
        w[:, end:] -= errors @ u[start:end, end:]
    if static_scale is not None:
        scales, zeros = static_scale, static_zero
    unpermuted = torch.empty_like(codes)
    unpermuted[:, order] = codes
    return QuantizedWeight.from_codes(unpermuted, scales, zeros, bits, g, k)
