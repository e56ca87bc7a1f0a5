"""Int4 tensor-core product with the weights as the *register* operand: ``out^T = W @ x^T``.

Hopper's ``wgmma`` reads its B operand from shared memory but may take A from registers.  The
straightforward ``x @ W`` puts the freshly decoded weights in B, so every tile is decoded in registers,
written to shared memory and read back by the tensor cores; at M = 16 that round trip, not the decode,
set the kernel's speed (KERNEL_NOTES run 8).  Swapping the operands makes the weights A and the small
activation tile B (``out^T[N, M] = W[N, K] @ x^T[K, M]``), and the decoded float16 pairs can go straight
into ``wgmma``, provided they already sit in the registers the instruction expects.

They do, with one renumbering of K inside each tile.  In the A fragment a thread holds, for each 16-wide
K step, the pairs ``2c, 2c+1`` and ``2c+8, 2c+9`` where ``c`` is its lane within a quad; one packed word
of the kernel layout holds eight consecutive inputs as four float16 pairs.  Since a dot product may sum
over K in any order, the kernel assigns the words of a tile so that the four pairs of word ``I c + i``
(``I`` = words per thread) land on exactly that thread's fragment positions: logical index
``32 i + 16 a + 8 b + 2 c + h`` for input ``8 (I c + i) + 4 a + 2 b + h``, and it loads the activations in
the same order (:func:`_activation_order`).  Triton then derives the word loads' layout from the
``wgmma`` fragment and emits no shared-memory conversion for the weights (checked in the PTX: no
``st.shared`` of the weight tile).
"""

from __future__ import annotations

import triton
import triton.language as tl
from graphpress.backends.triton.pairs import (
    dequantize_pairs,
    dequantize_pairs_bf16,
    halves,
    split_meta,
    split_meta_bf16,
)
from graphpress.backends.triton.splitk import store_or_reduce
from graphpress.backends.triton.tiles import program_tile

__all__ = ["swap_ab_kernel"]


@triton.jit
def _fragment_order(tile, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``[BLOCK_N, BLOCK_K]`` from ``[BLOCK_N, words, half, pair % 2, pair // 2]`` (as the joins of the decoded
    pairs leave it: ``join`` adds its axis last) in the fragment's K order."""
    PER_THREAD: tl.constexpr = BLOCK_K // 32
    tile = tl.reshape(tile, (BLOCK_N, 4, PER_THREAD, 2, 2, 2))  # [n, c, i, h, b, a]
    tile = tl.permute(tile, (0, 2, 5, 4, 1, 3))  # [n, i, a, b, c, h]
    return tl.reshape(tile, (BLOCK_N, BLOCK_K))


@triton.jit
def _activation_order(x, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BF16: tl.constexpr):
    """The ``[BLOCK_K, BLOCK_M]`` B operand from an activation tile ``[BLOCK_M, BLOCK_K // 2]`` of int32 pairs
    read in input order.

    The renumbering moves whole pairs (``h`` stays inside one), so it is done on the int32 pairs: when
    Triton carries the permuted layout back to the load (it does), the load still moves 4 bytes per element
    instead of 2, and half as many values are relabelled.
    """
    PER_THREAD: tl.constexpr = BLOCK_K // 32
    x = tl.reshape(x, (BLOCK_M, 4, PER_THREAD, 2, 2))  # pair 4 (I c + i) + 2 a + b
    x = tl.permute(x, (0, 2, 3, 4, 1))
    x = tl.reshape(halves(tl.reshape(x, (BLOCK_M, BLOCK_K // 2)), BF16), (BLOCK_M, BLOCK_K))
    return tl.trans(x)


@triton.jit
def _load_activations(x_ptr, offs_m, mask_m, k_start, K, stride_xm, BLOCK_K: tl.constexpr, EVEN_K: tl.constexpr):
    """The ``[BLOCK_M, BLOCK_K]`` activation tile of inputs ``k_start ..`` (rows past M and inputs past K read 0)."""
    offs_pair = k_start // 2 + tl.arange(0, BLOCK_K // 2)
    pointers = x_ptr.to(tl.pointer_type(tl.int32)) + offs_m[:, None] * (stride_xm // 2) + offs_pair[None, :]
    if EVEN_K:
        return tl.load(pointers, mask=mask_m[:, None], other=0)
    return tl.load(pointers, mask=mask_m[:, None] & (offs_pair < K // 2)[None, :], other=0)


@triton.jit
def swap_ab_kernel(x_ptr, w_ptr, m_ptr, out_ptr, part_ptr, count_ptr, M, N, K, k_per_split, stride_xm,
                   SPLIT_K: tl.constexpr,
                   GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   EVEN_K: tl.constexpr, USE_ASM: tl.constexpr = True,
                   DOT_IN_FLOAT32: tl.constexpr = False, BF16: tl.constexpr = False,
                   REDUCE_IN_FLIGHT: tl.constexpr = 1):
    """``out[M, N] = x[M, K] @ W`` for int4 weights with ``meta_pairs`` (``m_ptr``); program (m x n block, k split).

    ``BLOCK_K`` is a multiple of 32 that divides ``GROUP`` (one metadata row per tile).  ``SPLIT_K`` > 1
    programs of one output tile meet in ``splitk.store_or_reduce`` (float32 partials ``[splits, M, N]``).
    ``DOT_IN_FLOAT32`` multiplies in float32 (Triton's CPU interpreter, whose 16-bit ``tl.dot`` is unreliable).  ``BF16``
    (bfloat16 activations) decodes the weights into bfloat16 and multiplies in bfloat16, so the activation
    tile is used as loaded; otherwise weights and activations are float16.  ``REDUCE_IN_FLIGHT``: the split-K
    partials the last program loads together (``splitk.partials_in_flight``).
    """
    WORDS: tl.constexpr = BLOCK_K // 8
    X_IS_BF16: tl.constexpr = x_ptr.dtype.element_ty == tl.bfloat16
    offs_m, offs_n, k_begin, k_end = program_tile(N, k_per_split, tl.cdiv(K, BLOCK_K) * BLOCK_K, BLOCK_M, BLOCK_N)
    mask_n = offs_n < N
    mask_m = offs_m < M
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    # The activations are prefetched one tile ahead in registers: Triton pipelines the word and metadata
    # loads through shared memory but left this one synchronous (its reshape/permute on the way into the
    # dot hides the operand pattern), so every iteration waited for an L2 round trip before its product.
    # The last iteration re-reads its own tile (clamped) rather than one past the program's K range.
    x = _load_activations(x_ptr, offs_m, mask_m, k_begin, K, stride_xm, BLOCK_K, EVEN_K)
    for k_start in range(k_begin, k_end, BLOCK_K):
        x_next = _load_activations(x_ptr, offs_m, mask_m, tl.minimum(k_start + BLOCK_K, k_end - BLOCK_K), K,
                                   stride_xm, BLOCK_K, EVEN_K)
        rows = k_start // 8 + tl.arange(0, WORDS)
        words = tl.load(w_ptr + rows[None, :] * N + offs_n[:, None], mask=mask_n[:, None], other=0,
                        eviction_policy="evict_first")
        meta = tl.load(m_ptr + (k_start // GROUP) * N + offs_n, mask=mask_n, other=0)[:, None]
        if BF16:
            scale, offset = split_meta_bf16(meta, USE_ASM)
            p0, p1, p2, p3 = dequantize_pairs_bf16(words, scale, offset, USE_ASM)
        else:
            scale, offset = split_meta(meta, USE_ASM)
            p0, p1, p2, p3 = dequantize_pairs(words, scale, offset, USE_ASM)
        tile = tl.join(tl.join(halves(p0, BF16), halves(p1, BF16)), tl.join(halves(p2, BF16), halves(p3, BF16)))
        w = _fragment_order(tile, BLOCK_N, BLOCK_K)
        xt = _activation_order(x, BLOCK_M, BLOCK_K, X_IS_BF16).to(w.dtype)
        if DOT_IN_FLOAT32:
            acc = tl.dot(w.to(tl.float32), xt.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(w, xt, acc)
        x = x_next
    store_or_reduce(acc, out_ptr, part_ptr, count_ptr, tl.program_id(0), offs_m[None, :] * N + offs_n[:, None],
                    mask_n[:, None] & mask_m[None, :], M * N, tl.program_id(1), SPLIT_K,
                    IN_FLIGHT=REDUCE_IN_FLIGHT)
