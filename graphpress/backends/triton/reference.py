"""A round-to-nearest quantizer that emits the packing.py format, for the kernels' tests and benchmark.

The kernels need realistic packed weights to check and time; this is the smallest correct producer
(per-group min/max RTN, asymmetric or symmetric), running on whatever device the weight is on, so a
7B-shaped model quantizes on the GPU in seconds.  Quality-oriented quantizers (GPTQ, AWQ, HQQ) belong
to ``graphpress.quantization``; anything exposing the same attributes feeds ``TritonQuantLinear``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graphpress.quantization.packing import pack_codes, padded_columns

__all__ = ["PackedLinearWeight", "rtn_quantize"]


@dataclass
class PackedLinearWeight:
    """The packing.py format of one linear layer (the attributes ``TritonQuantLinear`` reads)."""

    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    bits: int
    group: int
    in_features: int
    out_features: int
    bias: torch.Tensor | None = None


def rtn_quantize(weight: torch.Tensor, bits: int, group: int | None = None, symmetric: bool = False,
                 bias: torch.Tensor | None = None) -> PackedLinearWeight:
    """Quantize ``weight [N, K]`` to ``bits`` in groups of ``group`` inputs (None: per channel).

    Asymmetric: ``scale = (max - min) / (2^b - 1)``, ``zero = round(-min / scale)``.  Symmetric:
    ``scale = max|w| / (2^(b-1) - 1)`` with the zero point fixed at ``2^(b-1)``.
    """
    n, k = weight.shape
    group = group or k
    kp = padded_columns(k, group)
    w = torch.nn.functional.pad(weight.float(), (0, kp - k)).reshape(n, kp // group, group)
    top = 2**bits - 1
    if symmetric:
        half = 2 ** (bits - 1)
        scales = (w.abs().amax(-1) / (half - 1)).clamp_min(1e-8)
        zeros = torch.full_like(scales, float(half))
    else:
        lo, hi = w.amin(-1), w.amax(-1)
        scales = ((hi - lo) / top).clamp_min(1e-8)
        zeros = torch.round(-lo / scales).clamp(0, top)
    codes = torch.round(w / scales.unsqueeze(-1) + zeros.unsqueeze(-1)).clamp(0, top).to(torch.uint8)
    # Padding columns hold the zero point so they dequantize to exactly 0, as packing.py requires.
    codes = codes.reshape(n, kp)
    if kp > k:
        codes[:, k:] = zeros.to(torch.uint8).repeat_interleave(group, dim=1)[:, k:]
    return PackedLinearWeight(pack_codes(codes, bits), scales, zeros, bits, group, k, n, bias)
