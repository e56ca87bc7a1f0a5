"""The Triton kernels: ``out[M, N] = x[M, K] @ dequant(W)[K, N]`` with dequantization fused into the loads.

Weights come in the :mod:`~graphpress.backends.triton.layout` format (N contiguous, int4 as int32 words
of 8 codes along K, metadata ``[Kp/group, N]`` with precomputed offsets).  Three paths share it:

* :func:`gemv_kernel` (M = 1): no tensor cores; each program multiplies a ``[BLOCK_K, BLOCK_N]`` tile
  element-wise into a register accumulator and reduces over K once at the end.  The grid is split
  along K (``SPLIT_K`` programs per column block) so that narrow layers still fill every multiprocessor;
  the last program of a column block sums the splits in the same launch.
* :func:`dot_kernel` with small ``BLOCK_M`` (M = 2..64) and split-K, or large ``BLOCK_M`` (GEMM):
  the dequantized tile is cast to the activation dtype and fed to ``tl.dot`` (tensor cores).
* :func:`splitk_reduce_kernel`: sums the float32 partial products of a split-K ``dot_kernel`` launch and casts them
  to the output dtype in one pass (deterministic, unlike float atomics).

Decoding a code: ``(word >> shift) & mask`` gives an integer in [0, 255]; OR-ing it into the mantissa
of 2**23 and subtracting 2**23 turns it into an exact float without the quarter-rate int-to-float
conversion instruction, and one FMA with the group's scale and offset gives the weight.
"""

from __future__ import annotations

import triton
import triton.language as tl
from graphpress.backends.triton.pairs import load_tile_pairs
from graphpress.backends.triton.pdl import begin_program, wait_for_producers
from graphpress.backends.triton.splitk import store_or_reduce
from graphpress.backends.triton.tiles import program_tile

__all__ = ["gemv_kernel", "dot_kernel", "splitk_reduce_kernel"]


@triton.jit
def _nibble_shift(code, BITS: tl.constexpr):
    """Bit offset of the ``code``-th code of a word (int4 nibbles are interleaved, see layout.nibble_of;
    int8 bytes are in order)."""
    if BITS == 4:
        return ((code // 2 + 4 * (code % 2)) * BITS).to(tl.int32)
    return (code * BITS).to(tl.int32)


@triton.jit
def _dequantize_tile(words, offs_k, scale, offset, BITS: tl.constexpr, CODES_PER_WORD: tl.constexpr):
    """Float32 weights of a ``[BLOCK_K, BLOCK_N]`` tile from its packed words (one word per element)."""
    shifts = _nibble_shift(offs_k % CODES_PER_WORD, BITS)[:, None]
    codes = (words.to(tl.int32) >> shifts) & ((1 << BITS) - 1)
    # 0x4B000000 is 2**23 as float32: its mantissa has room for the code exactly.
    codes_f = (codes | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
    return codes_f * scale + offset


@triton.jit
def _load_tile(w_ptr, s_ptr, o_ptr, offs_k, offs_n, k_start, N, Kp, group,
               BITS: tl.constexpr, CODES_PER_WORD: tl.constexpr, TILE_IN_ONE_GROUP: tl.constexpr):
    """Load and dequantize the weight tile of rows ``offs_k`` (all within [0, Kp)) and columns ``offs_n``."""
    mask_n = offs_n < N
    mask = (offs_k < Kp)[:, None] & mask_n[None, :]
    # Consecutive k share a word; the repeated addresses are served by L1, DRAM sees each word once.
    words = tl.load(w_ptr + (offs_k // CODES_PER_WORD)[:, None] * N + offs_n[None, :], mask=mask, other=0,
                    eviction_policy="evict_first")
    if TILE_IN_ONE_GROUP:
        # The whole tile lies in one group (BLOCK_K divides the group, tiles start on BLOCK_K multiples):
        # one contiguous row of metadata instead of one lookup per weight.
        meta = (k_start // group) * N + offs_n
        scale = tl.load(s_ptr + meta, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        offset = tl.load(o_ptr + meta, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    else:
        meta = (offs_k // group)[:, None] * N + offs_n[None, :]
        scale = tl.load(s_ptr + meta, mask=mask, other=0.0).to(tl.float32)
        offset = tl.load(o_ptr + meta, mask=mask, other=0.0).to(tl.float32)
    return _dequantize_tile(words, offs_k, scale, offset, BITS, CODES_PER_WORD)


@triton.jit
def _load_tile_by_words(w_ptr, s_ptr, o_ptr, k_start, offs_n, N, Kp, group,
                        BITS: tl.constexpr, CODES_PER_WORD: tl.constexpr, TILE_IN_ONE_GROUP: tl.constexpr,
                        BLOCK_K: tl.constexpr):
    """Like :func:`_load_tile`, but each packed word is loaded once and unpacked along a middle axis.

    Returns the weights ``[BLOCK_K / CODES_PER_WORD, CODES_PER_WORD, BLOCK_N]`` (row-major over the first
    two axes this is k - k_start) and their k indices ``[.., .., 1]``.  One 16-byte load per thread
    brings 32 int4 codes instead of the 8-fold re-reads of the broadcast-address form, which ran
    instruction-bound on the H100 (int4 took as long as int8 there).
    """
    WORDS: tl.constexpr = BLOCK_K // CODES_PER_WORD
    offs_w = k_start // CODES_PER_WORD + tl.arange(0, WORDS)
    code = tl.arange(0, CODES_PER_WORD)
    mask_n = offs_n < N
    words = tl.load(w_ptr + offs_w[:, None] * N + offs_n[None, :],
                    mask=(offs_w * CODES_PER_WORD < Kp)[:, None] & mask_n[None, :], other=0,
                    eviction_policy="evict_first")
    shifts = _nibble_shift(code, BITS)[None, :, None]
    codes = (words.to(tl.int32)[:, None, :] >> shifts) & ((1 << BITS) - 1)
    codes_f = (codes | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
    offs_k = offs_w[:, None, None] * CODES_PER_WORD + code[None, :, None]
    if TILE_IN_ONE_GROUP:
        meta = (k_start // group) * N + offs_n
        scale = tl.load(s_ptr + meta, mask=mask_n, other=0.0).to(tl.float32)[None, None, :]
        offset = tl.load(o_ptr + meta, mask=mask_n, other=0.0).to(tl.float32)[None, None, :]
    else:
        meta = (offs_k // group) * N + offs_n[None, None, :]
        mask = (offs_k < Kp) & mask_n[None, None, :]
        scale = tl.load(s_ptr + meta, mask=mask, other=0.0).to(tl.float32)
        offset = tl.load(o_ptr + meta, mask=mask, other=0.0).to(tl.float32)
    return codes_f * scale + offset, offs_k


@triton.jit
def _load_x(x_ptr, offs_k, K):
    return tl.load(x_ptr + offs_k, mask=offs_k < K, other=0.0, eviction_policy="evict_last").to(tl.float32)


@triton.jit
def gemv_kernel(x_ptr, w_ptr, s_ptr, o_ptr, out_ptr, part_ptr, count_ptr,
                N, K, Kp, group, k_per_split, SPLIT_K: tl.constexpr,
                BITS: tl.constexpr, CODES_PER_WORD: tl.constexpr, TILE_IN_ONE_GROUP: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PDL: tl.constexpr = 0):
    """One output row: ``out[N] = x[K] @ W``; program (n-block, k-split) covers ``k_per_split`` columns of K.

    K splits are summed in this launch (``splitk.store_or_reduce``).  With ``PDL`` (``pdl.py``) the first
    tile's weights are requested before waiting for the previous kernel (mode 2) or after (mode 1); the
    activations are always read after the wait.
    """
    begin_program(PDL)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_begin = pid_k * k_per_split
    k_end = tl.minimum(k_begin + k_per_split, Kp)
    # The first tile is peeled off the loop so that its weight loads can be issued before the wait.
    w, offs_k = _load_tile_by_words(w_ptr, s_ptr, o_ptr, k_begin, offs_n, N, Kp, group,
                                    BITS, CODES_PER_WORD, TILE_IN_ONE_GROUP, BLOCK_K)
    if PDL == 2:
        wait_for_producers(PDL)
    acc = w * _load_x(x_ptr, offs_k, K)
    for k_start in range(k_begin + BLOCK_K, k_end, BLOCK_K):
        w, offs_k = _load_tile_by_words(w_ptr, s_ptr, o_ptr, k_start, offs_n, N, Kp, group,
                                        BITS, CODES_PER_WORD, TILE_IN_ONE_GROUP, BLOCK_K)
        acc += w * _load_x(x_ptr, offs_k, K)
    result = tl.sum(tl.sum(acc, axis=0), axis=0)
    store_or_reduce(result, out_ptr, part_ptr, count_ptr, pid_n, offs_n, offs_n < N, N, pid_k, SPLIT_K)


@triton.jit
def dot_kernel(x_ptr, w_ptr, s_ptr, o_ptr, m_ptr, out_ptr, part_ptr,
               M, N, K, Kp, group, k_per_split, stride_xm,
               BITS: tl.constexpr, CODES_PER_WORD: tl.constexpr, TILE_IN_ONE_GROUP: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
               USE_PARTIALS: tl.constexpr, DOT_PRECISION: tl.constexpr, DOT_IN_FLOAT32: tl.constexpr,
               UNPACK_BY_WORDS: tl.constexpr, PAIRS: tl.constexpr = False, USE_ASM: tl.constexpr = True):
    """``out[M, N] = x[M, K] @ W`` on tensor cores; program (m-block x n-block, k-split).

    ``UNPACK_BY_WORDS`` picks :func:`_load_tile_by_words` (one load per word, then a reshape) over the
    broadcast-address :func:`_load_tile`; the autotuner tries both.  ``PAIRS`` (int4 with ``meta_pairs`` at
    ``m_ptr``, tiles inside one group) decodes two weights per instruction (``pairs.py``) and multiplies in
    float16.
    ``DOT_IN_FLOAT32`` multiplies in float32 instead of the activation dtype: float32 activations, and
    Triton's CPU interpreter, whose bf16 ``tl.dot`` returns garbage (seen with Triton 3.9).
    """
    offs_m, offs_n, k_begin, k_end = program_tile(N, k_per_split, Kp, BLOCK_M, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k_start in range(k_begin, k_end, BLOCK_K):
        offs_k = k_start + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=(offs_m < M)[:, None] & (offs_k < K)[None, :], other=0.0)
        if PAIRS:
            w = load_tile_pairs(w_ptr, m_ptr, k_start, offs_n, N, group, BLOCK_K, USE_ASM)
            if DOT_IN_FLOAT32:
                acc = tl.dot(x.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
            else:
                acc = tl.dot(x.to(tl.float16), w, acc)
        elif UNPACK_BY_WORDS:
            w3, _ = _load_tile_by_words(w_ptr, s_ptr, o_ptr, k_start, offs_n, N, Kp, group,
                                        BITS, CODES_PER_WORD, TILE_IN_ONE_GROUP, BLOCK_K)
            w = tl.reshape(w3, (BLOCK_K, BLOCK_N))
        else:
            w = _load_tile(w_ptr, s_ptr, o_ptr, offs_k, offs_n, k_start, N, Kp, group,
                           BITS, CODES_PER_WORD, TILE_IN_ONE_GROUP)
        if not PAIRS:
            if DOT_IN_FLOAT32:
                acc = tl.dot(x.to(tl.float32), w, acc, input_precision="ieee")
            else:
                acc = tl.dot(x, w.to(x.dtype), acc, input_precision=DOT_PRECISION)
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    tile = offs_m[:, None] * N + offs_n[None, :]
    if USE_PARTIALS:
        tl.store(part_ptr + tl.program_id(1) * M * N + tile, acc, mask=mask)
    else:
        tl.store(out_ptr + tile, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def splitk_reduce_kernel(part_ptr, out_ptr, numel, SPLIT_K: tl.constexpr, BLOCK: tl.constexpr):
    """``out = sum(part[0:SPLIT_K])`` over float32 partials of ``numel`` elements each, cast to out's dtype."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for split in tl.static_range(SPLIT_K):
        total += tl.load(part_ptr + split * numel + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, total.to(out_ptr.dtype.element_ty), mask=mask)
