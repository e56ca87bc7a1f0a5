"""int8 words into float16 pairs: the batch-1 kernel's decode for 8-bit codes.

The int8 kernel layout holds four consecutive codes of one column in an int32 word (``layout.py``).  One
``prmt`` with the constant ``0x64646464`` places two of them under the float16 exponent of 1024, giving
the pair ``(1024 + q[k], 1024 + q[k+1])``; subtracting ``(1024 + zero, 1024 + zero)`` (kept that way in
``meta_pairs``) leaves ``q - zero`` exactly, and one ``mul``/``fma`` in packed float16 multiplies both
pairs by their activation pairs.  The scale stays out of the loop over codes: the caller multiplies each
word's float32 sum by it.  About 10 instructions for 4 weights, against about 20 for the float32 decode
of ``kernels.gemv_kernel`` (shift, mask, the 2**23 trick, a dequantizing and an accumulating FMA per weight).

Float16 range: ``|q - zero| <= 255``, so the activations must enter these products small: the batch-1
kernel scales them by ``gemv_pairs.X_DOWNSCALE`` (2**-8) on conversion and the word sums back in float32,
which keeps the partial sums finite for activations up to about 3e4.  The float16 rounding of each product
(2**-11) averages out over K; relative error against float32 is about 1e-3 at the H100 shapes (measured in
the benchmark).

``USE_ASM=False`` computes the same float16 values with Triton arithmetic (the CPU interpreter).
"""

from __future__ import annotations

import triton
import triton.language as tl
from graphpress.backends.triton.pairs import WIDEN_PAIR_SUM, _f16_of_bits

__all__ = ["byte_word_dot", "byte_scale"]


@triton.jit
def byte_scale(meta):
    """The float32 scale of a ``meta_pairs`` element (its low float16 half)."""
    return _f16_of_bits(meta)


@triton.jit
def _byte_word_dot_emulated(word, meta, x0, x1):
    zero = _f16_of_bits(meta >> 16) - 1024.0
    d0 = (word & 0xFF).to(tl.float32) - zero
    d1 = ((word >> 8) & 0xFF).to(tl.float32) - zero
    d2 = ((word >> 16) & 0xFF).to(tl.float32) - zero
    d3 = ((word >> 24) & 0xFF).to(tl.float32) - zero
    lo = (d0 * _f16_of_bits(x0)).to(tl.float16).to(tl.float32)
    hi = (d1 * _f16_of_bits(x0 >> 16)).to(tl.float16).to(tl.float32)
    lo = (d2 * _f16_of_bits(x1) + lo).to(tl.float16).to(tl.float32)
    hi = (d3 * _f16_of_bits(x1 >> 16) + hi).to(tl.float16).to(tl.float32)
    return (lo + hi).to(tl.float16).to(tl.float32)


@triton.jit
def byte_word_dot(word, meta, x0, x1, USE_ASM: tl.constexpr):
    """``sum_j (q_j - zero) * x_j`` over the word's four codes, in float32 (not yet scaled); ``x0`` and ``x1``
    are the float16 activation pairs of codes 0-1 and 2-3."""
    if not USE_ASM:
        return _byte_word_dot_emulated(word, meta, x0, x1)
    bits = tl.inline_asm_elementwise(
        """{
        .reg .b32 magic, zero, acc, p1;
        .reg .b16 lo, hi;
        .reg .f32 flo;
        mov.b32 magic, 0x64646464;
        prmt.b32 zero, $2, $2, 0x3232;
        prmt.b32 acc, $1, magic, 0x5150;
        prmt.b32 p1, $1, magic, 0x5352;
        sub.rn.f16x2 acc, acc, zero;
        sub.rn.f16x2 p1, p1, zero;
        mul.rn.f16x2 acc, acc, $3;
        fma.rn.f16x2 acc, p1, $4, acc;"""
        + WIDEN_PAIR_SUM,
        "=r,r,r,r,r", [word, meta, x0, x1], dtype=tl.int32, is_pure=True, pack=1)
    return bits.to(tl.float32, bitcast=True)
