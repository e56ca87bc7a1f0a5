"""Decoding int4 words into float16 (or bfloat16) weights two at a time, for the batch-1 and tensor-core kernels.

:func:`dequantize_pairs` turns one int32 word of the kernel layout into four float16 pairs of weights;
the batch-1 kernel (``gemv_pairs.py``) multiplies those pairs with activation pairs directly and never
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

__all__ = ["dequantize_pairs", "split_meta", "load_tile_pairs", "halves", "split_meta_bf16",
           "dequantize_pairs_bf16", "DECODE_PAIRS_PTX", "SPLIT_META_PTX"]


#: PTX tail shared by the paired dot products: add the halves of the float16 pair in register ``acc`` (in
#: float16: one instruction with operand selectors, where widening both halves first took three) and return
#: the sum widened to float32 bits in ``$0`` (the block declares ``.reg .b16 lo, hi`` and ``.reg .f32 flo``).
WIDEN_PAIR_SUM = tl.constexpr("""
        mov.b32 {lo, hi}, acc;
        add.rn.f16 lo, lo, hi;
        cvt.f32.f16 flo, lo;
        mov.b32 $0, flo;
        }""")


#: ``split_meta``'s PTX: ``$0`` = (scale, scale), ``$1`` = (offset, offset) from the ``meta_pairs`` word ``$2``
#: (shared with the Gluon kernel, ``gluon_swap.py``).
SPLIT_META_PTX = tl.constexpr("""{
        .reg .b16 s, o;
        mov.b32 {s, o}, $2;
        mov.b32 $0, {s, s};
        mov.b32 $1, {o, o};
        }""")

#: ``dequantize_pairs``'s PTX: the four float16 weight pairs ``$0..$3`` of word ``$4`` with scale pair ``$5``
#: and offset pair ``$6`` (shared with the Gluon kernel, ``gluon_swap.py``).
DECODE_PAIRS_PTX = tl.constexpr("""{
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
        }""")


@triton.jit
def _f16_bits(values):
    """float32 -> the 16 bits of its float16 rounding, in the low half of an int32."""
    return values.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def _bf16_bits(values):
    """float32 -> the 16 bits of its bfloat16 rounding (to nearest, ties to even), in the low half of an int32.

    Done in integers because the CPU interpreter's ``.to(tl.bfloat16)`` truncates, which biases every
    weight towards zero (7e-3 relative error instead of the hardware's 3e-3).
    """
    bits = values.to(tl.int32, bitcast=True)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


@triton.jit
def _bf16_of_bits(bits):
    """The low 16 bits of an int32 read as bfloat16, widened to float32."""
    return bits.to(tl.int16).to(tl.bfloat16, bitcast=True).to(tl.float32)


@triton.jit
def _f16_of_bits(bits):
    """The low 16 bits of an int32 read as float16, widened to float32."""
    return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def split_meta(meta, USE_ASM: tl.constexpr):
    """(scale, scale) and (offset, offset) float16 pairs from a ``meta_pairs`` element.

    A separate pure instruction block, so the compiler computes it once per column and reuses it for
    every word row of the tile (the metadata is the same down a group).  Written as half moves rather than
    ``prmt``, so that ``ptxas`` folds them into the ``fma``'s operand selectors (no instruction at all: the
    deep batch-1 tile's loop lost 16 of its 284 instructions, offline SASS).
    """
    if not USE_ASM:
        return meta & 0xFFFF, (meta >> 16) & 0xFFFF
    return tl.inline_asm_elementwise(SPLIT_META_PTX, "=r,=r,r", [meta], dtype=(tl.int32, tl.int32), is_pure=True,
                                     pack=1)


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
    return tl.inline_asm_elementwise(DECODE_PAIRS_PTX, "=r,=r,=r,=r,r,r,r", [word, scale, offset],
                                     dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)


@triton.jit
def split_meta_bf16(meta, USE_ASM: tl.constexpr):
    """(scale, scale) and (middle, middle) bfloat16 pairs, ``middle = offset + 8 scale`` (for bfloat16 products).

    bfloat16 keeps 8 significant bits.  The asymmetric offset is the group's minimum, often larger than the
    weights themselves, so rounding it would cost about 5e-3 of relative error; the middle of the code
    range is near the group's mean and small, and the codes are centred to match (-8 .. 7, see
    :func:`dequantize_pairs_bf16`), which also halves the effect of the rounded scale.
    """
    if not USE_ASM:
        scale32 = _f16_of_bits(meta)
        scale = _bf16_bits(scale32)
        middle = _bf16_bits(_f16_of_bits(meta >> 16) + 8.0 * scale32)
        return scale | (scale << 16), middle | (middle << 16)
    return tl.inline_asm_elementwise(
        """{
        .reg .b16 s16, o16;
        .reg .f32 s32, o32;
        mov.b32 {s16, o16}, $2;
        cvt.f32.f16 s32, s16;
        cvt.f32.f16 o32, o16;
        fma.rn.f32 o32, s32, 0f41000000, o32;
        cvt.rn.bf16x2.f32 $0, s32, s32;
        cvt.rn.bf16x2.f32 $1, o32, o32;
        }""",
        "=r,=r,r", [meta], dtype=(tl.int32, tl.int32), is_pure=True, pack=1)


@triton.jit
def _centred_bf16(word, shift, s, m):
    """bfloat16 bits of ``(code - 8) * s + m`` for the code at bit ``shift``, rounded once."""
    return _bf16_bits((((word >> shift) & 0xF) - 8).to(tl.float32) * s + m)


@triton.jit
def _dequantize_pairs_bf16_emulated(word, scale, middle):
    s = _bf16_of_bits(scale)
    m = _bf16_of_bits(middle)
    p0 = _centred_bf16(word, 0, s, m) | (_centred_bf16(word, 16, s, m) << 16)
    p1 = _centred_bf16(word, 4, s, m) | (_centred_bf16(word, 20, s, m) << 16)
    p2 = _centred_bf16(word, 8, s, m) | (_centred_bf16(word, 24, s, m) << 16)
    p3 = _centred_bf16(word, 12, s, m) | (_centred_bf16(word, 28, s, m) << 16)
    return p0, p1, p2, p3


@triton.jit
def dequantize_pairs_bf16(word, scale, middle, USE_ASM: tl.constexpr):
    """:func:`dequantize_pairs` in bfloat16: ``(code - 8) * scale + middle`` (both from :func:`split_meta_bf16`).

    bfloat16's 7-bit mantissa has no room for a code shifted by four (the float16 version's
    ``0x00F000F0`` trick), so every pair gets its own shift; ``lop3`` puts the codes over the exponent of
    128, one ``fma`` by (1, -136) makes them exact centred integers and one ``fma`` applies scale and
    middle, rounding the weight once.  A bfloat16 product needs no conversion of bfloat16 activations.
    """
    if not USE_ASM:
        return _dequantize_pairs_bf16_emulated(word, scale, middle)
    return tl.inline_asm_elementwise(
        """{
        .reg .b32 t1, t2, t3, magic, one, minus136;
        mov.b32 magic, 0x43004300;
        mov.b32 one, 0x3F803F80;
        mov.b32 minus136, 0xC308C308;
        shr.u32 t1, $4, 4;
        shr.u32 t2, $4, 8;
        shr.u32 t3, $4, 12;
        lop3.b32 $0, $4, 0x000F000F, magic, 0xEA;
        lop3.b32 $1, t1, 0x000F000F, magic, 0xEA;
        lop3.b32 $2, t2, 0x000F000F, magic, 0xEA;
        lop3.b32 $3, t3, 0x000F000F, magic, 0xEA;
        fma.rn.bf16x2 $0, $0, one, minus136;
        fma.rn.bf16x2 $1, $1, one, minus136;
        fma.rn.bf16x2 $2, $2, one, minus136;
        fma.rn.bf16x2 $3, $3, one, minus136;
        fma.rn.bf16x2 $0, $0, $5, $6;
        fma.rn.bf16x2 $1, $1, $5, $6;
        fma.rn.bf16x2 $2, $2, $5, $6;
        fma.rn.bf16x2 $3, $3, $5, $6;
        }""",
        "=r,=r,=r,=r,r,r,r", [word, scale, middle],
        dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1)


@triton.jit
def halves(pair, BF16: tl.constexpr = False):
    """Low and high 16-bit floats (bfloat16 with ``BF16``) of an int32 pair tensor, joined on a new last axis."""
    dtype: tl.constexpr = tl.bfloat16 if BF16 else tl.float16
    low = pair.to(tl.int16).to(dtype, bitcast=True)
    high = (pair >> 16).to(tl.int16).to(dtype, bitcast=True)
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
    tile = tl.join(tl.join(halves(p0), halves(p1)), tl.join(halves(p2), halves(p3)))
    tile = tl.permute(tile, (0, 4, 3, 2, 1))
    return tl.reshape(tile, (BLOCK_K, offs_n.shape[0]))
