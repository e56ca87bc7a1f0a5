"""Decoding int4 words into float16 weights two at a time, for the batch-1 and the tensor-core kernels.

:func:`dequantize_pairs` turns one int32 word of the kernel layout into four float16 pairs of weights;
the batch-1 kernel (``gemv_int4.py``) multiplies those pairs with activation pairs directly and never
materialises the weights. The tensor-core kernel needs them as a ``[BLOCK_K, BLOCK_N]`` operand
(:func:`load_tile_pairs`), and its old loader spent about
six scalar instructions per weight on shifts, masks and float32 arithmetic, which left it
instruction-bound at M = 16 (int4 ran slower than int8 there).  This loader decodes and dequantizes
each word with the same pair instructions (``lop3`` into float16 mantissas, one ``sub``/``fma`` to make
the codes exact, one ``fma`` with the group's scale and offset per two weights), then splits the pairs
into halves and interleaves them into K order with ``join``/``permute``/``reshape``.  The product then
runs in float16 (the activations are converted, as the batch-1 kernel does).

``USE_ASM=False`` computes the same float16 values with Triton arithmetic (the CPU interpreter).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["dequantize_pairs", "split_meta", "load_tile_pairs"]


@triton.jit
def _f16_bits(values):
    """float32 -> the 16 bits of its float16 rounding, in the low half of an int32."""
    return values.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def _f16_of_bits(bits):
    """The low 16 bits of an int32 read as float16, widened to float32."""
    return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def split_meta(meta, USE_ASM: tl.constexpr):
    """(scale, scale) and (offset, offset) float16 pairs from a ``meta_pairs`` element.

    A separate pure instruction block, so the compiler computes it once per column and reuses it for
    every word row of the tile (the metadata is the same down a group).
    """
    if not USE_ASM:
        return meta & 0xFFFF, (meta >> 16) & 0xFFFF
    return tl.inline_asm_elementwise(
        """
        prmt.b32 $0, $2, $2, 0x1010;
        prmt.b32 $1, $2, $2, 0x3232;
        """,
        "=r,=r,r", [meta], dtype=(tl.int32, tl.int32), is_pure=True, pack=1)


@triton.jit
def _dequantize_pairs_emulated(word, scale, offset):
    s = _f16_of_bits(scale)
    o = _f16_of_bits(offset)
    p0 = _f16_bits(((word >> 0) & 0xF).to(tl.float32) * s + o) | (
        _f16_bits(((word >> 16) & 0xF).to(tl.float32) * s + o) << 16)
    p1 = _f16_bits(((word >> 4) & 0xF).to(tl.float32) * s + o) | (
        _f16_bits(((word >> 20) & 0xF).to(tl.float32) * s + o) << 16)
    p2 = _f16_bits(((word >> 8) & 0xF).to(tl.float32) * s + o) | (
        _f16_bits(((word >> 24) & 0xF).to(tl.float32) * s + o) << 16)
    p3 = _f16_bits(((word >> 12) & 0xF).to(tl.float32) * s + o) | (
        _f16_bits(((word >> 28) & 0xF).to(tl.float32) * s + o) << 16)
    return p0, p1, p2, p3


@triton.jit
def dequantize_pairs(word, scale, offset, USE_ASM: tl.constexpr):
    """Four int32 tensors; the s-th holds the float16 weights of codes 2s (low half) and 2s+1 (high half).

    Decoding (Marlin's trick): masks 0x000F000F and 0x00F000F0 pick a code pair straight into float16
    mantissas over the exponent of 1024, as ``1024 + q`` or ``1024 + 16 q``; one ``sub`` or ``fma`` makes
    either exact, a single shift by 8 serves the other two pairs, and one ``fma`` per pair applies the
    group's scale and offset.
    """
    if not USE_ASM:
        return _dequantize_pairs_emulated(word, scale, offset)
    return tl.inline_asm_elementwise(
        """{
        .reg .b32 t, magic, sixteenth, minus64;
        mov.b32 magic, 0x64006400;
        mov.b32 sixteenth, 0x2C002C00;
        mov.b32 minus64, 0xD400D400;
        shr.u32 t, $4, 8;
        lop3.b32 $0, $4, 0x000F000F, magic, 0xEA;
        lop3.b32 $1, $4, 0x00F000F0, magic, 0xEA;
        lop3.b32 $2, t, 0x000F000F, magic, 0xEA;
        lop3.b32 $3, t, 0x00F000F0, magic, 0xEA;
        sub.f16x2 $0, $0, magic;
        fma.rn.f16x2 $1, $1, sixteenth, minus64;
        sub.f16x2 $2, $2, magic;
        fma.rn.f16x2 $3, $3, sixteenth, minus64;
        fma.rn.f16x2 $0, $0, $5, $6;
        fma.rn.f16x2 $1, $1, $5, $6;
        fma.rn.f16x2 $2, $2, $5, $6;
        fma.rn.f16x2 $3, $3, $5, $6;
        }""",
        "=r,=r,=r,=r,r,r,r", [word, scale, offset], dtype=(tl.int32, tl.int32, tl.int32, tl.int32),
        is_pure=True, pack=1)


@triton.jit
def _halves(pair):
    """Low and high float16 of an int32 pair tensor, joined on a new last axis (low first)."""
    low = pair.to(tl.int16).to(tl.float16, bitcast=True)
    high = (pair >> 16).to(tl.int16).to(tl.float16, bitcast=True)
    return tl.join(low, high)


@triton.jit
def load_tile_pairs(w_ptr, m_ptr, k_start, offs_n, N, group, BLOCK_K: tl.constexpr, USE_ASM: tl.constexpr):
    """The float16 weights ``[BLOCK_K, BLOCK_N]`` of inputs ``k_start ..`` (one group) and columns ``offs_n``.

    ``m_ptr`` is ``meta_pairs``; the tile must lie in one quantization group and inside the packed rows.
    """
    WORDS: tl.constexpr = BLOCK_K // 8
    rows = k_start // 8 + tl.arange(0, WORDS)
    mask_n = offs_n < N
    words = tl.load(w_ptr + rows[:, None] * N + offs_n[None, :], mask=mask_n[None, :], other=0,
                    eviction_policy="evict_first")
    meta = tl.load(m_ptr + (tl.zeros((WORDS, 1), dtype=tl.int32) + (k_start // group) * N) + offs_n[None, :],
                   mask=mask_n[None, :], other=0)
    scale, offset = split_meta(meta, USE_ASM)
    p0, p1, p2, p3 = dequantize_pairs(words, scale, offset, USE_ASM)
    # [WORDS, BLOCK_N, half, s % 2, s // 2] with k = 8 * word + 4 * (s // 2) + 2 * (s % 2) + half.
    tile = tl.join(tl.join(_halves(p0), _halves(p1)), tl.join(_halves(p2), _halves(p3)))
    tile = tl.permute(tile, (0, 4, 3, 2, 1))
    return tl.reshape(tile, (BLOCK_K, offs_n.shape[0]))
