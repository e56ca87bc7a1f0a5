"""Repacking the shared quantized-weight format into the layout the Triton kernels read.

graphpress stores quantized weights row-major, ``[N, Kp * slot / 8]`` uint8, low nibble first, with
``scales`` and ``zeros`` of shape ``[N, Kp / group]`` (see :mod:`graphpress.quantization.packing`).
The kernels want something else:

* **Transposed, N contiguous.** A program reads a ``[BLOCK_K, BLOCK_N]`` tile; with N the fastest axis
  each thread loads 16 consecutive bytes of one packed row and a warp covers 512 contiguous bytes,
  so every load is a full 16-byte coalesced access whatever BLOCK_K is (GemLite's layout).
* **int4 as int32 words of 8 codes along K, nibbles interleaved.** Code ``k`` sits in word ``k // 8`` at
  nibble ``nibble_of(k % 8)`` = ``j // 2 + 4 * (j % 2)``: codes 2s and 2s+1 are nibbles s and s+4, so one
  ``lop3`` on ``word >> 4s`` puts that pair into the two 16-bit halves of a register as float16 values,
  lined up with the activation pair ``x[2s], x[2s+1]`` read as one 32-bit word (see ``gemv_pairs.py``).
  int8 codes are int32 words of 4 codes along K (code ``k`` at byte ``k % 4``), so that one ``prmt``
  puts two consecutive codes into a float16 pair the same way (``byte_pairs.py``); where the padded K is
  not a multiple of 4 they stay one byte per code (``uint8 [Kp, N]``). 2- and 3-bit codes, and int4 whose
  padded K is not a whole number of words, are widened to 8-bit codes: the 8-bit kernels decode them
  exactly, so every stored weight runs on the GPU (at int8 bandwidth) instead of on a slow fallback.
* **Offsets instead of zero points.** ``W = (q - z) * s = q * s + m`` with ``m = -z * s`` precomputed,
  so dequantization is a single fused multiply-add per weight.
* **Metadata transposed** to ``[Kp / group, N]`` so one group row is a contiguous load too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from graphpress.quantization.packing import padded_columns, slot_bits, unpack_codes

__all__ = ["KERNEL_BITS", "KernelWeights", "repack_for_kernels", "codes_per_word", "dequantize_kernel_weights",
           "kernel_weight",
           "nibble_of", "interleave_nibbles", "pack_meta_pairs", "interleave_rows", "gated_columns", "GATED_ACTIVATIONS",
           "FLOAT16_SAFE_SCALE"]

#: Code widths the Triton kernels decode from their packed tensor (others are stored widened to 8).
KERNEL_BITS = (4, 8)

#: Smallest scale magnitude kept as float16 metadata (below it float16 is subnormal and loses precision).
FLOAT16_SAFE_SCALE = 1e-4

#: Gate activations the kernels' epilogue applies; a layer's code is the index + 1 (0: no gating).
GATED_ACTIVATIONS = ("silu", "gelu_tanh")


def codes_per_word(bits: int, packed_dtype: torch.dtype = torch.int32) -> int:
    """How many codes one element of the kernel's packed tensor holds: 8 per int32 for int4, 4 per int32 for
    int8 (1 where int8 stays bytes, a padded K that is not a multiple of 4)."""
    if bits not in KERNEL_BITS:
        raise ValueError(f"the Triton kernels decode {KERNEL_BITS}-bit codes, not {bits}-bit")
    return 8 if bits == 4 else 4 if packed_dtype == torch.int32 else 1


def nibble_of(code: int) -> int:
    """Nibble (0-7) of an int32 kernel word that holds the word's ``code``-th int4 code (0-7)."""
    return code // 2 + 4 * (code % 2)


def interleave_nibbles(words: torch.Tensor) -> torch.Tensor:
    """Move code j of each int32 word (at nibble j, the packing.py order) to nibble :func:`nibble_of` (j)."""
    wide = words.to(torch.int64) & 0xFFFFFFFF
    out = torch.zeros_like(wide)
    for code in range(8):
        out |= ((wide >> (4 * code)) & 0xF) << (4 * nibble_of(code))
    return torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)


@dataclass(frozen=True)
class KernelWeights:
    """A quantized weight in kernel layout.

    ``bits`` is the width the kernel decodes (4 or 8), ``source_bits`` the width of the codes' values.
    ``packed``: int32 ``[Kp / 8, N]`` (int4), int32 ``[Kp / 4, N]`` (int8) or uint8 ``[Kp, N]`` (int8 with
    ``Kp`` not a multiple of 4); ``scales`` and ``offsets``:
    ``[Kp / group, N]`` in the activation dtype's float width (float32 kept for float32 activations).
    Dequantization: ``W[n, k] = code(k, n) * scales[k // group, n] + offsets[k // group, n]``.
    ``meta_pairs`` (int4 with float16 metadata only): int32 ``[Kp / group, N]`` holding the float16 bits of
    the scale (low half) and offset (high half), so the batch-1 kernel gets both with one 4-byte load laid
    out like the packed words (see ``gemv_pairs.py``); it costs the same bytes again as the two tensors.
    For int8 words with integer zero points the high half holds ``1024 + zero`` instead of the offset, so
    that ``(1024 + q) - (1024 + zero)`` is exact in float16 (``byte_pairs.py``).
    """

    packed: torch.Tensor
    scales: torch.Tensor
    offsets: torch.Tensor
    bits: int
    source_bits: int
    group: int
    in_features: int
    out_features: int
    meta_pairs: torch.Tensor | None = None

    @property
    def codes_per_word(self) -> int:
        """Codes in one element of ``packed`` (see :func:`codes_per_word`)."""
        return codes_per_word(self.bits, self.packed.dtype)

    @property
    def padded_in_features(self) -> int:
        """K rounded up to whole groups; the kernels iterate over this many columns."""
        return padded_columns(self.in_features, self.group)


def repack_for_kernels(
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bits: int,
    group: int,
    in_features: int,
    meta_dtype: torch.dtype = torch.float32,
) -> KernelWeights:
    """Convert the packing.py format (``qweight [N, Kp*slot/8]`` uint8) to :class:`KernelWeights`.

    ``meta_dtype`` is the dtype scales and offsets are stored in; float32 costs 2x the metadata bytes
    of bf16 (3% of an int4 g128 weight) but keeps the offset ``-z*s`` exact.
    """
    kp = padded_columns(in_features, group)
    n = qweight.shape[0]
    if qweight.dtype != torch.uint8 or qweight.shape[1] * 8 != kp * slot_bits(bits):
        raise ValueError(
            f"qweight must be uint8 [N, {kp * slot_bits(bits) // 8}] for {bits}-bit codes, {in_features} inputs "
            f"and group {group}; got {qweight.dtype} {list(qweight.shape)}"
        )
    if bits == 4 and kp % 8 == 0:
        # Low nibble first in each byte + little-endian bytes = code k at bit 4*(k%8) of int32 word k//8.
        kernel_bits, words = 4, interleave_nibbles(qweight.contiguous().view(torch.int32))
    else:
        kernel_bits, words = 8, qweight if bits == 8 else unpack_codes(qweight, bits)
        if kp % 4 == 0:  # little-endian bytes: code k at byte k % 4 of int32 word k // 4
            words = words.contiguous().view(torch.int32)
    packed = words.t().contiguous()
    scales_f = scales.to(torch.float32)
    offsets = -zeros.to(torch.float32) * scales_f
    scales_t = scales_f.t().contiguous().to(meta_dtype)
    offsets_t = offsets.t().contiguous().to(meta_dtype)
    if kernel_bits == 4:
        meta_pairs = pack_meta_pairs(scales_t, offsets_t) if meta_dtype == torch.float16 else None
    else:
        meta_pairs = _byte_meta_pairs(scales_f.t(), zeros.t()) if packed.dtype == torch.int32 else None
    return KernelWeights(
        packed=packed,
        scales=scales_t,
        offsets=offsets_t,
        meta_pairs=meta_pairs,
        bits=kernel_bits,
        source_bits=bits,
        group=group,
        in_features=in_features,
        out_features=n,
    )


def pack_meta_pairs(scales: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """float16 ``scales`` and ``offsets`` (same shape) as one int32 tensor: scale bits low, offset bits high."""
    low = scales.to(torch.float16).view(torch.int16).to(torch.int32) & 0xFFFF
    high = offsets.to(torch.float16).view(torch.int16).to(torch.int32) << 16
    return (low | high).contiguous()


def _byte_meta_pairs(scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor | None:
    """int8 words' ``meta_pairs``: float16 scale (low half) and ``1024 + zero`` (high half), or None where the
    zero points are not integers in [0, 255] or a scale is not a normal float16 (HQQ's float zeros, tiny
    scales): those run on the float32 kernel."""
    zeros = zeros.to(torch.float32)
    exact = bool(((zeros == zeros.round()) & (zeros >= 0) & (zeros <= 255)).all())
    magnitudes = scales.abs()
    if not exact or magnitudes.min() < FLOAT16_SAFE_SCALE or magnitudes.max() > 6e4:
        return None
    return pack_meta_pairs(scales.contiguous(), (zeros + 1024).contiguous())


def dequantize_kernel_weights(weights: KernelWeights, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``W^T`` as a dense ``[in_features, out_features]`` tensor: the fallback path and the tests' reference."""
    kp = weights.padded_in_features
    if weights.bits == 4:
        shifts = torch.tensor([4 * nibble_of(c) for c in range(8)], device=weights.packed.device, dtype=torch.int32)
        codes = (weights.packed.unsqueeze(1) >> shifts.view(1, 8, 1)) & 0xF  # [Kp/8, 8, N]
        codes = codes.reshape(kp, -1)
    elif weights.packed.dtype == torch.int32:
        shifts = torch.arange(0, 32, 8, device=weights.packed.device, dtype=torch.int32)
        codes = ((weights.packed.unsqueeze(1) >> shifts.view(1, 4, 1)) & 0xFF).reshape(kp, -1)
    else:
        codes = weights.packed
    scales = weights.scales.to(dtype).repeat_interleave(weights.group, dim=0)
    offsets = weights.offsets.to(dtype).repeat_interleave(weights.group, dim=0)
    return (codes.to(dtype) * scales + offsets)[: weights.in_features]


@torch.library.custom_op("graphpress::kernel_weight", mutates_args=())
def kernel_weight(packed: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor, bits: int, group: int,
                  in_features: int, dtype: torch.dtype) -> torch.Tensor:
    """The dense ``[out_features, in_features]`` weight of a kernel-layout weight, in ``dtype``.

    One opaque op (``TritonQuantLinear.weight``, for model code that calls ``F.linear(x, layer.weight)``
    itself), so that graphpress's frontend can turn that ``F.linear`` back into the layer's product when a
    lowered model is traced again, instead of meeting the unpacking's shifts and masks."""
    weights = KernelWeights(packed, scales, offsets, bits, bits, group, in_features, packed.shape[1])
    return dequantize_kernel_weights(weights).t().to(dtype).contiguous()


@kernel_weight.register_fake
def _kernel_weight_fake(packed, scales, offsets, bits, group, in_features, dtype):
    return packed.new_empty((packed.shape[1], in_features), dtype=dtype)


def interleave_rows(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Rows ``gate[0], up[0], gate[1], up[1], ...``: the output-channel order of a gated weight, so that one
    program of the batch-1 kernel holds each ``(gate, up)`` pair and can apply the activation itself."""
    if gate.shape != up.shape:
        raise ValueError(f"gate and up must have one shape, got {tuple(gate.shape)} and {tuple(up.shape)}")
    return torch.stack([gate, up], dim=1).flatten(0, 1)


def gated_columns(y: torch.Tensor, activation: str = "silu") -> torch.Tensor:
    """``act(gate) * up`` of interleaved ``(gate, up)`` columns, computed in float32 and cast back (what
    the kernel's epilogue computes; the path for every other kernel and device)."""
    gate, up = y[..., 0::2].float(), y[..., 1::2].float()
    if activation == "silu":
        activated = torch.nn.functional.silu(gate)
    elif activation == "gelu_tanh":
        activated = torch.nn.functional.gelu(gate, approximate="tanh")
    else:
        raise ValueError(f"gate activation {activation!r}: expected one of {GATED_ACTIVATIONS}")
    return (activated * up).to(y.dtype)
