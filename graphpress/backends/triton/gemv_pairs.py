"""The batch-1 int4 and int8 kernel: two codes per instruction, in packed float16 arithmetic.

The first GEMV (``kernels.gemv_kernel``) spent about six scalar instructions per weight (shift, mask,
the 2**23 float trick, a dequantizing FMA, an accumulating FMA), and at M = 1 the H100 ran it
instruction-bound: int4 took as long as int8 although it moves half the bytes.  This kernel works on
pairs instead, the way Marlin and FasterTransformer decode int4:

* the layout interleaves the nibbles of each int32 word (``layout.nibble_of``), so ``lop3(word >> 4s,
  0x000F000F, 0x64006400)`` yields the float16 pair ``(1024 + q[2s], 1024 + q[2s+1])`` in one
  instruction, and a ``sub.f16x2`` of 1024 makes the codes exact;
* activations are read as 32-bit pairs ``x[2s], x[2s+1]`` (bfloat16 pairs are converted to float16
  once per row and thread, not once per weight), so dequantization (``q * s + o``) and the product
  are one ``fma.f16x2`` each per *two* weights;
* each word's float16 pair of partial sums (four products each) is added in float16 and widened to
  float32 once, so rounding in float16 never spans more than the word's 8 products.

About 22 instructions per 8 weights instead of about 48.  int8 words (``BITS=8``: four codes along K) take
the same path with ``byte_pairs.byte_word_dot``: two float16 pairs per word, the scale applied once per word.  The scale and offset are rounded to float16
(relative 2**-11); products stay far from float16's range for activations up to about 10^4.

Split-K without a second launch (``splitk.store_or_reduce``): the last program of a column block adds
the partials.  The counters are one buffer per device, so two split-K launches must not run
concurrently on different streams of one GPU (ops.py launches on the current stream; decode loops and
CUDA graphs use one).

``USE_ASM=False`` runs the same arithmetic with Triton's float16 conversions instead of PTX, for the
CPU interpreter (which cannot execute inline assembly); the tests compare it with the reference.
"""

from __future__ import annotations

import triton
import triton.language as tl
from graphpress.backends.triton.byte_pairs import byte_scale, byte_word_dot
from graphpress.backends.triton.pairs import WIDEN_PAIR_SUM, _f16_bits, _f16_of_bits, dequantize_pairs, split_meta
from graphpress.backends.triton.pdl import begin_program, wait_for_producers
from graphpress.backends.triton.splitk import store_or_reduce

__all__ = ["gemv_pairs_kernel", "X_DOWNSCALE"]

#: int8 words multiply exact ``q - zero`` (up to 255) by the activations in float16, which would overflow
#: for activations above about 128 (LLMs' down projections see thousands); the activations enter the
#: float16 products scaled by 2**-8 and the sum is scaled back in float32 (no rounding: powers of two), so
#: the products stay finite for activations up to about 3e4.
X_DOWNSCALE: tl.constexpr = tl.constexpr(2.0 ** -8)


@triton.jit
def _x_pairs_to_f16(pairs, X_IS_BF16: tl.constexpr, USE_ASM: tl.constexpr, DOWNSCALE: tl.constexpr = False):
    """Activation pairs (two bfloat16 or float16 in an int32) as float16 pairs; with ``DOWNSCALE`` times
    ``X_DOWNSCALE`` (exact: a power of two), rounded once."""
    if USE_ASM:
        if X_IS_BF16 and DOWNSCALE:
            return tl.inline_asm_elementwise(
                """{
                .reg .b32 lo, hi;
                shl.b32 lo, $1, 16;
                and.b32 hi, $1, 0xFFFF0000;
                mul.f32 lo, lo, 0f3B800000;
                mul.f32 hi, hi, 0f3B800000;
                cvt.rn.f16x2.f32 $0, hi, lo;
                }""",
                "=r,r", [pairs], dtype=tl.int32, is_pure=True, pack=1)
        if X_IS_BF16:
            return tl.inline_asm_elementwise(
                """{
                .reg .b32 lo, hi;
                shl.b32 lo, $1, 16;
                and.b32 hi, $1, 0xFFFF0000;
                cvt.rn.f16x2.f32 $0, hi, lo;
                }""",
                "=r,r", [pairs], dtype=tl.int32, is_pure=True, pack=1)
        if DOWNSCALE:
            return tl.inline_asm_elementwise(
                """{
                .reg .b32 factor;
                mov.b32 factor, 0x1C001C00;
                mul.rn.f16x2 $0, $1, factor;
                }""",
                "=r,r", [pairs], dtype=tl.int32, is_pure=True, pack=1)
        return pairs
    if X_IS_BF16:
        lo = (pairs << 16).to(tl.float32, bitcast=True)
        hi = (pairs & -65536).to(tl.float32, bitcast=True)
    else:
        lo = _f16_of_bits(pairs)
        hi = _f16_of_bits(pairs >> 16)
    if DOWNSCALE:
        lo = lo * X_DOWNSCALE
        hi = hi * X_DOWNSCALE
    return _f16_bits(lo) | (_f16_bits(hi) << 16)


@triton.jit
def _accumulate_emulated(p0, p1, p2, p3, x0, x1, x2, x3):
    """What the PTX of :func:`_accumulate_pairs` computes, rounding to float16 where it does."""
    acc_lo = tl.zeros(p0.shape, tl.float32)
    acc_hi = tl.zeros(p0.shape, tl.float32)
    for pair in tl.static_range(4):
        if pair == 0:
            wp, xp = p0, x0
        elif pair == 1:
            wp, xp = p1, x1
        elif pair == 2:
            wp, xp = p2, x2
        else:
            wp, xp = p3, x3
        acc_lo = (_f16_of_bits(wp) * _f16_of_bits(xp) + acc_lo).to(tl.float16).to(tl.float32)
        acc_hi = (_f16_of_bits(wp >> 16) * _f16_of_bits(xp >> 16) + acc_hi).to(tl.float16).to(tl.float32)
    return (acc_lo + acc_hi).to(tl.float16).to(tl.float32)


@triton.jit
def _accumulate_pairs(p0, p1, p2, p3, x0, x1, x2, x3, USE_ASM: tl.constexpr):
    """``sum(w * x)`` over a word's four float16 weight pairs and activation pairs, in float32."""
    if not USE_ASM:
        return _accumulate_emulated(p0, p1, p2, p3, x0, x1, x2, x3)
    bits = tl.inline_asm_elementwise(
        """{
        .reg .b32 acc;
        .reg .b16 lo, hi;
        .reg .f32 flo;
        mul.rn.f16x2 acc, $1, $5;
        fma.rn.f16x2 acc, $2, $6, acc;
        fma.rn.f16x2 acc, $3, $7, acc;
        fma.rn.f16x2 acc, $4, $8, acc;"""
        + WIDEN_PAIR_SUM,
        "=r,r,r,r,r,r,r,r,r", [p0, p1, p2, p3, x0, x1, x2, x3], dtype=tl.int32, is_pure=True, pack=1)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _word_dot(word, scale, offset, x0, x1, x2, x3, USE_ASM: tl.constexpr):
    """Sum over one word's 8 codes of ``(q * s + o) * x`` in float32: decode two weights per instruction
    (:func:`pairs.dequantize_pairs`), multiply-accumulate two per instruction, widen once."""
    p0, p1, p2, p3 = dequantize_pairs(word, scale, offset, USE_ASM)
    return _accumulate_pairs(p0, p1, p2, p3, x0, x1, x2, x3, USE_ASM)


@triton.jit
def _load_words(w_ptr, word_rows, end_row, offs_n, mask_n, N, EVEN_N: tl.constexpr):
    """A ``[WORDS, BLOCK_N]`` tile of packed words; rows past ``end_row`` re-read the last row (an L2 hit
    that only a never-computed prefetch sees) so that full column blocks load without predicates."""
    rows = tl.minimum(word_rows, end_row - 1)
    pointers = w_ptr + rows[:, None] * N + offs_n[None, :]
    if EVEN_N:
        return tl.load(pointers, eviction_policy="evict_first")
    return tl.load(pointers, mask=mask_n[None, :], other=0, eviction_policy="evict_first")


@triton.jit
def _load_meta(m_ptr, first_group, last_group, N, offs_n, mask_n, WORDS: tl.constexpr, GROUP_WORDS: tl.constexpr,
               EVEN_N: tl.constexpr):
    """The ``meta_pairs`` of each word row of a tile that starts in group ``first_group``, laid out like the
    words (a ``[1, BLOCK_N]`` load is laid out differently and was moved through shared memory every tile).

    A tile inside one group reads one row for all its word rows (the per-row offsets ``row // GROUP_WORDS``
    are compile-time zeros, so the compiler loads each column once); a tile of several groups reads one row
    per group.  Rows past the last group (a partial last tile) re-read the last one: their activations are 0.
    """
    groups = tl.minimum(first_group + tl.arange(0, WORDS)[:, None] // GROUP_WORDS, last_group)
    pointers = m_ptr + groups * N + offs_n[None, :]
    if EVEN_N:
        return tl.load(pointers)
    return tl.load(pointers, mask=mask_n[None, :], other=0)


@triton.jit
def _load_x_pair(x_pairs, index, half_k, X_IS_BF16: tl.constexpr, USE_ASM: tl.constexpr, EVEN_K: tl.constexpr,
                 DOWNSCALE: tl.constexpr):
    if EVEN_K:
        return _x_pairs_to_f16(tl.load(x_pairs + index), X_IS_BF16, USE_ASM, DOWNSCALE)[:, None]
    return _x_pairs_to_f16(tl.load(x_pairs + index, mask=index < half_k, other=0), X_IS_BF16, USE_ASM,
                           DOWNSCALE)[:, None]


@triton.jit
def _load_x_pairs(x_pairs, word_rows, half_k, last_row, X_IS_BF16: tl.constexpr, USE_ASM: tl.constexpr,
                  EVEN_K: tl.constexpr, PAIRS: tl.constexpr):
    """The ``PAIRS`` (4 for int4 words, 2 for int8) float16 activation pairs of each word row, as ``[WORDS, 1]``
    int32 tensors; with 2 the last two are the first two again (unused).

    With ``EVEN_K`` (K fills every packed word) rows are clamped to ``last_row`` instead of masked: the
    clamped rows only feed a prefetched tile that is never computed, and no compare or predicate is spent.
    """
    first = (tl.minimum(word_rows, last_row) if EVEN_K else word_rows) * PAIRS
    DOWNSCALE: tl.constexpr = PAIRS == 2  # int8 words (see X_DOWNSCALE)
    x0 = _load_x_pair(x_pairs, first, half_k, X_IS_BF16, USE_ASM, EVEN_K, DOWNSCALE)
    x1 = _load_x_pair(x_pairs, first + 1, half_k, X_IS_BF16, USE_ASM, EVEN_K, DOWNSCALE)
    if PAIRS == 2:
        return x0, x1, x0, x1
    x2 = _load_x_pair(x_pairs, first + 2, half_k, X_IS_BF16, USE_ASM, EVEN_K, DOWNSCALE)
    x3 = _load_x_pair(x_pairs, first + 3, half_k, X_IS_BF16, USE_ASM, EVEN_K, DOWNSCALE)
    return x0, x1, x2, x3


@triton.jit
def _tile_dot(words, meta, x0, x1, x2, x3, BITS: tl.constexpr, USE_ASM: tl.constexpr):
    """Each word's ``sum(w * x)`` in float32, dequantized: int4 with its scale and offset per pair, int8 with
    the exact ``q - zero`` per pair and the scale once per word."""
    if BITS == 4:
        scale, offset = split_meta(meta, USE_ASM)
        return _word_dot(words, scale, offset, x0, x1, x2, x3, USE_ASM)
    return byte_word_dot(words, meta, x0, x1, USE_ASM) * byte_scale(meta)


@triton.jit
def gemv_pairs_kernel(x_ptr, w_ptr, m_ptr, out_ptr, part_ptr, count_ptr,
                      N, K, Kp, k_per_split, GROUP: tl.constexpr,
                      BLOCK_N: tl.constexpr, WORDS: tl.constexpr, SPLIT_K: tl.constexpr,
                      X_IS_BF16: tl.constexpr, USE_ASM: tl.constexpr, EVEN_K: tl.constexpr,
                      EVEN_N: tl.constexpr, PDL: tl.constexpr = 0, GLU: tl.constexpr = 0,
                      BITS: tl.constexpr = 4, PROBE: tl.constexpr = 0):
    """``out[N] = x[K] @ dequant(W)``; program (column block, K split) covers ``k_per_split`` inputs.

    ``BITS`` 4 (words of 8 codes) or 8 (words of 4 codes, ``layout.py``).  Requires an even K (activation
    pairs), a tile of ``codes per word * WORDS`` inputs that divides the group or is a multiple of it (deep
    tiles span several groups: many warps on one column block, summed in the program instead of across K
    splits) and ``k_per_split`` a multiple of the tile.  ``x`` is bfloat16 or float16;
    ``m_ptr`` points to ``layout.KernelWeights.meta_pairs``.  ``GROUP`` is a compile-time constant, so the
    metadata row index is a shift, not an integer division per tile; ``EVEN_K`` means ``K == Kp`` and that
    the tile divides ``Kp`` (otherwise activations past K load as 0, which also empties a partial last tile),
    ``EVEN_N`` that ``BLOCK_N`` divides N (then no load needs a predicate).  ``PDL`` (``pdl.py``): mode 2
    requests the first tile's words and metadata before waiting for the previous kernel, mode 1 waits first.
    ``GLU`` (1 SiLU, 2 tanh-GELU): the columns are interleaved ``(gate, up)`` pairs and ``out[N / 2]`` receives
    ``act(gate) * up`` (``splitk.write_output``).  ``PROBE`` (a bit mask, for ``benchmarks/overhead_probe.py``
    only; the output is then wrong): 1 replaces the decode and product by an XOR of the loaded values, 2 stores
    each split's partial sums plainly instead of the split-K arrival and reduction.
    """
    begin_program(PDL)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    rows = tl.arange(0, WORDS)
    x_pairs = x_ptr.to(tl.pointer_type(tl.int32))
    half_k = K // 2
    acc = tl.zeros((WORDS, BLOCK_N), dtype=tl.float32)
    k_begin = pid_k * k_per_split
    k_end = tl.minimum(k_begin + k_per_split, Kp)
    # The group's (scale, offset) row is loaded for every word row, so that the load has the words'
    # layout (a [1, BLOCK_N] load is laid out differently and was converted through shared memory).
    # Register double-buffering: the next tile's words, metadata and activations are requested before
    # this tile's arithmetic, so every thread keeps loads in flight while it computes (without it the
    # compiler issued each 16-byte load just before its use, one at a time).
    CODES: tl.constexpr = 32 // BITS
    PAIRS: tl.constexpr = CODES // 2
    tile_words = WORDS * CODES
    end_row = k_end // CODES
    word_rows = k_begin // CODES + rows
    GROUP_WORDS: tl.constexpr = GROUP // CODES
    last_group = Kp // GROUP - 1
    words = _load_words(w_ptr, word_rows, end_row, offs_n, mask_n, N, EVEN_N)
    meta = _load_meta(m_ptr, k_begin // GROUP, last_group, N, offs_n, mask_n, WORDS, GROUP_WORDS, EVEN_N)
    if PDL == 2:
        wait_for_producers(PDL)
    x0, x1, x2, x3 = _load_x_pairs(x_pairs, word_rows, half_k, end_row - 1, X_IS_BF16, USE_ASM, EVEN_K, PAIRS)
    for k_start in range(k_begin, k_end, tile_words):
        # The last iteration re-requests its own metadata row (clamped) rather than a row past the end.
        k_next = k_start + tile_words
        next_rows = k_next // CODES + rows
        words_next = _load_words(w_ptr, next_rows, end_row, offs_n, mask_n, N, EVEN_N)
        meta_next = _load_meta(m_ptr, tl.minimum(k_next, k_end - 1) // GROUP, last_group, N, offs_n, mask_n, WORDS,
                               GROUP_WORDS, EVEN_N)
        n0, n1, n2, n3 = _load_x_pairs(x_pairs, next_rows, tl.minimum(half_k, end_row * PAIRS), end_row - 1,
                                       X_IS_BF16, USE_ASM, EVEN_K, PAIRS)
        if PROBE & 1:
            acc += (words ^ meta ^ x0 ^ x1 ^ x2 ^ x3).to(tl.float32)
        else:
            acc += _tile_dot(words, meta, x0, x1, x2, x3, BITS, USE_ASM)
        words, meta, x0, x1, x2, x3 = words_next, meta_next, n0, n1, n2, n3
    total = tl.sum(acc, axis=0)
    if BITS == 8:
        total = total * (1.0 / X_DOWNSCALE)
    if PROBE & 2:
        tl.store(part_ptr + pid_k * N + offs_n, total, mask=mask_n)
    else:
        store_or_reduce(total, out_ptr, part_ptr, count_ptr, pid_n, offs_n, mask_n, N, pid_k, SPLIT_K, GLU)
