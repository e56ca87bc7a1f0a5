"""The one storage format of quantized weights in graphpress, and its pack/unpack routines.

A weight ``W[N, K]`` (out_features x in_features, as in ``nn.Linear``) quantized to ``bits`` bits in
groups of ``group`` consecutive input columns is stored as

* ``qweight``: uint8 codes in ``[0, 2**bits - 1]``, several per byte along K. For 2 bits four codes share
  a byte, for 3 and 4 bits two (3-bit codes ride in 4-bit slots), for 8 bits one. Within a byte the
  lowest bits hold the lowest column index (ONNX MatMulNBits order: low nibble first).
  Shape ``[N, Kp * slot_bits / 8]`` where ``Kp`` is K rounded up to a multiple of ``group``.
* ``scales``: float ``[N, Kp / group]``.
* ``zeros``: float ``[N, Kp / group]``, the zero point in code units (a float, so that min-offset
  formats such as GGUF Q4_1 and HQQ are exact; integer zero points are a special case).

and dequantizes as ``W[n, k] = (q[n, k] - zeros[n, k // group]) * scales[n, k // group]``.
Columns ``K..Kp`` are padding (code = zero point), so they dequantize to 0.
Kernels may repack this into their own layouts; this format is what modules, checkpoints and
exporters exchange.
"""

from __future__ import annotations

import torch

__all__ = ["SUPPORTED_BITS", "slot_bits", "padded_columns", "pack_codes", "unpack_codes", "dequantize"]

SUPPORTED_BITS = (2, 3, 4, 8)


def slot_bits(bits: int) -> int:
    """Bits of storage one code occupies: 2, 4 (for 3- and 4-bit codes) or 8."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}")
    return {2: 2, 3: 4, 4: 4, 8: 8}[bits]


def padded_columns(in_features: int, group: int) -> int:
    """K rounded up to a whole number of groups."""
    return -(-in_features // group) * group


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack uint8 codes ``[N, Kp]`` into bytes ``[N, Kp * slot / 8]``, lowest column in the lowest bits."""
    slot = slot_bits(bits)
    per_byte = 8 // slot
    n, kp = codes.shape
    if kp % per_byte:
        raise ValueError(f"{kp} columns do not fill whole bytes of {per_byte} codes")
    c = codes.to(torch.uint8).reshape(n, kp // per_byte, per_byte)
    out = torch.zeros(n, kp // per_byte, dtype=torch.uint8, device=codes.device)
    for i in range(per_byte):
        out |= c[..., i] << (i * slot)
    return out


def unpack_codes(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: uint8 codes ``[N, Kp]``."""
    slot = slot_bits(bits)
    per_byte = 8 // slot
    mask = (1 << slot) - 1
    parts = [(packed >> (i * slot)) & mask for i in range(per_byte)]
    return torch.stack(parts, dim=-1).reshape(packed.shape[0], -1)


def dequantize(
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bits: int,
    group: int,
    in_features: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Float ``W[N, in_features]`` from the packed format."""
    q = unpack_codes(qweight, bits).to(dtype)
    n, kp = q.shape
    q = q.reshape(n, kp // group, group)
    w = (q - zeros.to(dtype).unsqueeze(-1)) * scales.to(dtype).unsqueeze(-1)
    return w.reshape(n, kp)[:, :in_features]
