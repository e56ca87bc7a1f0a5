"""The swapped-operand int4 product (``swap_ab.py``) written in Gluon, so that its ``wgmma`` runs asynchronously.

Triton's pipeliner makes a ``wgmma`` asynchronous only when its register operand is defined outside the loop,
and the swapped kernel's register operand is the tile it has just decoded: every K step waited for its own
``wgmma`` before decoding the next tile (KERNEL_NOTES run 41: ``wait 0`` each step, 0.3-0.4 instructions issued
per cycle).  Gluon states the layouts and the waits explicitly.  Here:

* the K loop is unrolled by two, so consecutive tiles decode into different registers, and each ``wgmma`` is
  waited for only after the next one is issued (``warpgroup_mma_wait(1)``): decoding tile k + 1 overlaps the
  tensor cores on tile k;
* the packed words stream through a shared-memory ring by ``cp.async`` (16-byte pieces, ``STAGES - 1`` steps
  ahead) and are read back in the layout whose decode lands in the ``wgmma`` A fragment; Gluon's layout
  inference (``AutoLayout``) derives that layout backwards from the fragment through the same K renumbering
  as ``swap_ab._fragment_order``, so there is no layout conversion (checked offline: none in the IR);
* the activations are read in that renumbered order (a pair of tiles ahead, in registers), converted to
  float16 and stored to a two-slot shared buffer, the ``wgmma`` B operand.

``ptxas`` serialises a ``wgmma`` chain (its notes C7514/C7515) when anything else reads or writes the
accumulator inside a pipeline stage; in a first version the zero-trip path of the loop did (it zeroes the
accumulator), so the loop is stated to run at least once (``gl.assume``).  ``test_kernels_compile.py``
checks the compiled kernel with the ``ptxas`` Triton ships.

A program may also be 2 or 4 warp groups (``PARTS``, ``gl.warp_specialize``), each on a share of its K range,
their float32 tiles summed in shared memory (``_parts_sum``): the chains of a K split without its partials in
global memory (KERNEL_NOTES run 57: o at 16 rows, 9.9 -> 9.5 us).

Limits (``ops.gluon_applies``, ``configs._gluon_configs``): int4 with float16 metadata pairs, activations as
wide as the padded K, whole pairs of K tiles per split and warp group, at least two splits for programs of one
warp group (``_finish`` says why), N a multiple of the column tile, Hopper (``wgmma``), a Triton whose Gluon has
``AutoLayout``.  The splits meet in the last-arriving program, as in ``splitk.store_or_reduce``.
"""

from __future__ import annotations

from graphpress.backends.triton.pairs import DECODE_PAIRS_PTX, SPLIT_META_PTX

__all__ = ["AVAILABLE", "gluon_swap_kernel"]

try:  # Gluon (Triton >= 3.5) with layout inference; the copy and barrier builtins were renamed by 3.9.
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        async_copy,
        fence_async_shared,
        mbarrier,
        warpgroup_mma,
        warpgroup_mma_wait,
    )

    AVAILABLE = hasattr(gl, "AutoLayout")
    _copy_to_shared = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared
    _cta_barrier = getattr(gl, "thread_barrier", None) or gl.barrier
    # Registers per thread of the worker warp groups (``_parts_sum``): a decode and ``wgmma`` chain needs about
    # as many as a whole program of four warps (91-149 by tile, ptxas -v).  Two groups may take up to 256 each;
    # four share the register file at 128 (65536 / 512 threads).
    _TWO_PART_REGS = gl.constexpr(232)
    _FOUR_PART_REGS = gl.constexpr(128)
except ImportError:  # pragma: no cover - depends on the installed Triton
    AVAILABLE = False


if AVAILABLE:

    @gluon.jit
    def _halves(pair):
        low = pair.to(gl.int16).to(gl.float16, bitcast=True)
        high = (pair >> 16).to(gl.int16).to(gl.float16, bitcast=True)
        return gl.join(low, high)

    @gluon.jit
    def _fragment_inputs(j, PER_THREAD: gl.constexpr):
        h = j % 2
        c = (j // 2) % 4
        b = (j // 8) % 2
        a = (j // 16) % 2
        i = j // 32
        return 8 * (PER_THREAD * c + i) + 4 * a + 2 * b + h

    @gluon.jit
    def _decoded(words, meta, a_layout: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr):
        """The float16 weight tile ``[BLOCK_N, BLOCK_K]`` in fragment order, as the ``wgmma`` A operand."""
        PER_THREAD: gl.constexpr = BLOCK_K // 32
        scale, offset = gl.inline_asm_elementwise(SPLIT_META_PTX, "=r,=r,r", [meta], dtype=(gl.int32, gl.int32),
                                                  is_pure=True, pack=1)
        p0, p1, p2, p3 = gl.inline_asm_elementwise(DECODE_PAIRS_PTX, "=r,=r,=r,=r,r,r,r", [words, scale, offset],
                                                   dtype=(gl.int32, gl.int32, gl.int32, gl.int32), is_pure=True,
                                                   pack=1)
        tile = gl.join(gl.join(_halves(p0), _halves(p1)), gl.join(_halves(p2), _halves(p3)))
        tile = gl.permute(gl.reshape(tile, (BLOCK_N, 4, PER_THREAD, 2, 2, 2)), (0, 2, 5, 4, 1, 3))
        return gl.set_auto_layout(gl.reshape(tile, (BLOCK_N, BLOCK_K)), a_layout)

    @gluon.jit
    def _finish(acc, out_ptr, part_ptr, count_ptr, tile, offsets, mask, split_stride, pid_k,
                SPLIT_K: gl.constexpr, IN_FLIGHT: gl.constexpr):
        """Store the split's partial and, in the last-arriving program, the sum of all partials (``IN_FLIGHT``
        loads at a time, in split order; see ``splitk.store_or_reduce``).

        Always through float32 partials in global memory, never a conversion of the accumulator itself: the
        ``ptxas`` of Triton 3.6 moved the float32 -> bfloat16 conversions of the accumulator above the final
        ``wgmma`` wait (SASS: ``F2FP`` before ``WARPGROUP.DEPBAR.LE gsb0, 0x0``, PTX in the right order), so
        one split wrote its tile without the last ``wgmma`` (found on the H100: relative error 0.17 from the last
        K tile alone).  Stores were never moved, so every launch has at least two splits (``configs``).
        """
        gl.static_assert(SPLIT_K > 1, "the Gluon kernel writes through split-K partials (see _finish)")
        gl.store(part_ptr + pid_k * split_stride + offsets, acc, mask=mask)
        _cta_barrier()
        arrived = gl.atomic_add(count_ptr + tile, 1, sem="acq_rel")
        if arrived == SPLIT_K - 1:
            total = gl.zeros_like(acc)
            for first in range(0, SPLIT_K, IN_FLIGHT):
                batch = gl.zeros_like(acc)
                for split in gl.static_range(IN_FLIGHT):
                    batch += gl.load(part_ptr + (first + split) * split_stride + offsets, mask=mask, other=0.0,
                                     cache_modifier=".cg")
                total += batch
            gl.store(out_ptr + offsets, total.to(out_ptr.dtype.element_ty), mask=mask)
            gl.atomic_xchg(count_ptr + tile, 0)

    @gluon.jit
    def _accumulate(x_ptr, w_ptr, m_ptr, ring, x_smem, M, N, stride_xm, m0, n0, k_begin, k_len,
                    BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, GROUP: gl.constexpr,
                    WARPS: gl.constexpr, STAGES: gl.constexpr):
        """The float32 tile ``x[m0:, k_begin:k_begin + k_len] @ W[.., n0:]`` (transposed: ``[BLOCK_N, BLOCK_M]``)
        of one warp group (``WARPS`` = 4) or of a whole program's warps, through its own ``ring`` of
        ``[STAGES, BLOCK_K // 8, BLOCK_N]`` words and a two-slot activation buffer ``x_smem``."""
        mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[WARPS, 1],
                                                      instr_shape=[16, BLOCK_M, 16])
        a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
        auto: gl.constexpr = gl.AutoLayout()
        x_layout: gl.constexpr = gl.BlockedLayout([1, 2], [1, 32], [WARPS, 1], [1, 0])
        copy_layout: gl.constexpr = gl.BlockedLayout([1, 4], [128 // BLOCK_N, BLOCK_N // 4], [WARPS, 1], [1, 0])
        WORDS: gl.constexpr = BLOCK_K // 8
        # At least one iteration, stated for the compiler (see the module docstring).
        gl.assume(k_len >= 2 * BLOCK_K)
        steps = k_len // BLOCK_K
        last_pair = k_begin + k_len - 2 * BLOCK_K

        copy_rows = gl.arange(0, WORDS, layout=gl.SliceLayout(1, copy_layout))
        copy_cols = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, copy_layout))
        copy_src = w_ptr + (k_begin // 8 + copy_rows)[:, None] * N + copy_cols[None, :]
        for stage in gl.static_range(STAGES - 1):
            _copy_to_shared(ring.index(stage), copy_src + gl.minimum(stage, steps - 1) * WORDS * N)
            async_copy.commit_group()

        xm = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, x_layout))
        xk = _fragment_inputs(gl.arange(0, BLOCK_K, layout=gl.SliceLayout(0, x_layout)), BLOCK_K // 32)
        x_rows = x_ptr + xm[:, None] * stride_xm + xk[None, :]
        x_mask = (xm < M)[:, None]
        # One column index per unrolled step: two decode chains sharing one auto-layout value do not resolve.
        offs_n0 = n0 + gl.arange(0, BLOCK_N, layout=auto)
        offs_n1 = n0 + gl.arange(0, BLOCK_N, layout=auto)
        meta0 = gl.load(m_ptr + (k_begin // GROUP) * N + offs_n0)[:, None]
        meta1 = gl.load(m_ptr + ((k_begin + BLOCK_K) // GROUP) * N + offs_n1)[:, None]
        x0 = gl.load(x_rows + k_begin, mask=x_mask, other=0.0)
        x1 = gl.load(x_rows + k_begin + BLOCK_K, mask=x_mask, other=0.0)
        acc = gl.zeros((BLOCK_N, BLOCK_M), gl.float32, layout=mma)
        for k_pair in range(0, k_len, 2 * BLOCK_K):
            # The next pair's metadata and activations, one pair ahead (the last pair re-reads itself).
            k_next = gl.minimum(k_begin + k_pair + 2 * BLOCK_K, last_pair)
            next_meta0 = gl.load(m_ptr + (k_next // GROUP) * N + offs_n0)[:, None]
            next_meta1 = gl.load(m_ptr + ((k_next + BLOCK_K) // GROUP) * N + offs_n1)[:, None]
            next_x0 = gl.load(x_rows + k_next, mask=x_mask, other=0.0)
            next_x1 = gl.load(x_rows + k_next + BLOCK_K, mask=x_mask, other=0.0)
            for s in gl.static_range(2):
                if s == 0:
                    meta, x = meta0, x0
                else:
                    meta, x = meta1, x1
                step = k_pair // BLOCK_K + s
                _copy_to_shared(ring.index((step + STAGES - 1) % STAGES),
                                copy_src + gl.minimum(step + STAGES - 1, steps - 1) * WORDS * N)
                async_copy.commit_group()
                async_copy.wait_group(STAGES - 1)
                words = gl.permute(ring.index(step % STAGES).load(auto), (1, 0))
                w = _decoded(words, meta, a_layout, BLOCK_N, BLOCK_K)
                buf = x_smem.index(s)
                buf.store(x.to(gl.float16))
                fence_async_shared()
                acc = warpgroup_mma(w, buf.permute((1, 0)), acc, is_async=True)
                acc = warpgroup_mma_wait(num_outstanding=1, deps=(acc,))
            meta0, meta1, x0, x1 = next_meta0, next_meta1, next_x0, next_x1
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        async_copy.wait_group(0)
        return acc

    @gluon.jit
    def _part(x_ptr, w_ptr, m_ptr, sums, done, M, N, stride_xm, m0, n0, k_begin, k_part,
              PART: gl.constexpr, BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr,
              GROUP: gl.constexpr, STAGES: gl.constexpr):
        """Warp group ``PART`` of a program split across warp groups: its share of the K range, left in
        ``sums[PART]``; the workers (``PART > 0``) then arrive on ``done`` (one arrival per warp group: Gluon's
        ``arrive`` is made by one thread, after a barrier of the group that orders its stores)."""
        ring = gl.allocate_shared_memory(gl.int32, [STAGES, BLOCK_K // 8, BLOCK_N],
                                         gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
        x_smem = gl.allocate_shared_memory(gl.float16, [2, BLOCK_M, BLOCK_K],
                                           gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_K], gl.float16))
        acc = _accumulate(x_ptr, w_ptr, m_ptr, ring, x_smem, M, N, stride_xm, m0, n0,
                          k_begin + PART * k_part, k_part, BLOCK_M, BLOCK_N, BLOCK_K, GROUP, 4, STAGES)
        sums.index(PART).store(acc)
        if PART > 0:
            mbarrier.arrive(done)

    @gluon.jit
    def _parts_sum(x_ptr, w_ptr, m_ptr, M, N, stride_xm, m0, n0, k_begin, k_len,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, GROUP: gl.constexpr,
                   STAGES: gl.constexpr, PARTS: gl.constexpr):
        """The program's tile summed over ``PARTS`` warp groups (2 or 4), each on a contiguous share of the K
        range: more decode and ``wgmma`` chains per multiprocessor without a split-K reduction through global
        memory.  The shares meet in shared memory, which also keeps the accumulator's bfloat16 conversion
        after the last ``wgmma`` (see ``_finish``)."""
        sums = gl.allocate_shared_memory(gl.float32, [PARTS, BLOCK_N, BLOCK_M], gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
        done = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        mbarrier.init(done, count=PARTS - 1)
        k_part = k_len // PARTS
        k_part = k_len // PARTS
        if PARTS == 2:
            gl.warp_specialize([
                (_part, (x_ptr, w_ptr, m_ptr, sums, done, M, N, stride_xm, m0, n0, k_begin, k_part, 0,
                         BLOCK_M, BLOCK_N, BLOCK_K, GROUP, STAGES)),
                (_part, (x_ptr, w_ptr, m_ptr, sums, done, M, N, stride_xm, m0, n0, k_begin, k_part, 1,
                         BLOCK_M, BLOCK_N, BLOCK_K, GROUP, STAGES))], [4], [_TWO_PART_REGS])
        else:
            gl.static_assert(PARTS == 4, "a program splits its K range over 2 or 4 warp groups")
            gl.warp_specialize([
                (_part, (x_ptr, w_ptr, m_ptr, sums, done, M, N, stride_xm, m0, n0, k_begin, k_part, 0,
                         BLOCK_M, BLOCK_N, BLOCK_K, GROUP, STAGES)),
                (_part, (x_ptr, w_ptr, m_ptr, sums, done, M, N, stride_xm, m0, n0, k_begin, k_part, 1,
                         BLOCK_M, BLOCK_N, BLOCK_K, GROUP, STAGES)),
                (_part, (x_ptr, w_ptr, m_ptr, sums, done, M, N, stride_xm, m0, n0, k_begin, k_part, 2,
                         BLOCK_M, BLOCK_N, BLOCK_K, GROUP, STAGES)),
                (_part, (x_ptr, w_ptr, m_ptr, sums, done, M, N, stride_xm, m0, n0, k_begin, k_part, 3,
                         BLOCK_M, BLOCK_N, BLOCK_K, GROUP, STAGES))], [4, 4, 4], [_FOUR_PART_REGS] * 3)
        mbarrier.wait(done, 0)
        _cta_barrier()
        mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                      instr_shape=[16, BLOCK_M, 16])
        total = sums.index(0).load(mma)
        for part in gl.static_range(1, PARTS):
            total += sums.index(part).load(mma)
        mbarrier.invalidate(done)
        return total

    @gluon.jit
    def gluon_swap_kernel(x_ptr, w_ptr, m_ptr, out_ptr, part_ptr, count_ptr, M, N, K, k_per_split, stride_xm,
                          BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_K: gl.constexpr, GROUP: gl.constexpr,
                          SPLIT_K: gl.constexpr, WARPS: gl.constexpr, STAGES: gl.constexpr,
                          IN_FLIGHT: gl.constexpr, PARTS: gl.constexpr = 1):
        """``out[M, N] = x[M, K] @ W`` for int4 words and ``meta_pairs``; program (m x n block, k split).

        Every split covers a multiple of ``2 * BLOCK_K * PARTS`` inputs (at least one pair of tiles per warp
        group); ``BLOCK_K`` divides ``GROUP``; ``BLOCK_N`` divides N and is 64 per warp group of four
        (``WARPS``) or a multiple of it.  ``PARTS`` > 1: the program is ``PARTS`` warp groups of four warps
        (``WARPS`` = 4, launched with ``num_warps=4``: the others are warp-specialised workers), each on a
        share of the split (``_parts_sum``).
        """
        mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[WARPS, 1],
                                                      instr_shape=[16, BLOCK_M, 16])
        pid = gl.program_id(0)
        pid_k = gl.program_id(1)
        blocks_n = gl.cdiv(N, BLOCK_N)
        m0 = (pid // blocks_n) * BLOCK_M
        n0 = (pid % blocks_n) * BLOCK_N
        k_begin = pid_k * k_per_split
        k_len = gl.minimum(k_begin + k_per_split, K) - k_begin
        if PARTS == 1:
            ring = gl.allocate_shared_memory(gl.int32, [STAGES, BLOCK_K // 8, BLOCK_N],
                                             gl.SwizzledSharedLayout(1, 1, 1, [1, 0]))
            x_smem = gl.allocate_shared_memory(gl.float16, [2, BLOCK_M, BLOCK_K],
                                               gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_K], gl.float16))
            acc = _accumulate(x_ptr, w_ptr, m_ptr, ring, x_smem, M, N, stride_xm, m0, n0, k_begin, k_len,
                              BLOCK_M, BLOCK_N, BLOCK_K, GROUP, WARPS, STAGES)
        else:
            acc = _parts_sum(x_ptr, w_ptr, m_ptr, M, N, stride_xm, m0, n0, k_begin, k_len,
                             BLOCK_M, BLOCK_N, BLOCK_K, GROUP, STAGES, PARTS)
        om = m0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, mma))
        on = n0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, mma))
        offsets = om[None, :] * N + on[:, None]
        mask = (om < M)[None, :] & (on < N)[:, None]
        if PARTS > 1 and SPLIT_K == 1:
            gl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=mask)
        else:
            _finish(acc, out_ptr, part_ptr, count_ptr, pid, offsets, mask, M * N, pid_k, SPLIT_K, IN_FLIGHT)

else:  # pragma: no cover - depends on the installed Triton
    gluon_swap_kernel = None
