"""Split-K finished inside the product's own launch: the last-arriving program adds the partials.

A K split gives narrow layers enough programs to fill the GPU, but summing the splits in a second
kernel costs a launch, which at decode sizes is as long as the product on a 4096 x 4096 weight.  Here
every program stores its float32 partial tile; an atomic arrival counter per output tile tells the last
one, which adds the partials in split order (deterministic) and writes the output, then resets the
counter to zero for the next launch.  ``SPLIT_K`` is a compile-time constant so that the last program's
partial loads can be unrolled and issued together: with a run-time count they went out one L2 round trip
after another, about 2 us at 16 splits, a quarter of a 4096 x 4096 batch-1 product.  That suits the
batch-1 kernels' small 1-D tiles; a tensor-core tile holds 32-64 floats per thread, and loading all its
partials at once spilled 576-748 bytes per thread at four splits (offline ``ptxas -v`` of the swapped
kernel; 44-112 one after another).  Those kernels pass ``IN_FLIGHT``, the partials requested together
(:func:`partials_in_flight`): as many as fit a register budget, so a small tile (M = 16) still waits for
one round trip per few splits, not per split.
The counters are one int32 buffer per device (``ops._counters``), allocated before any CUDA-graph capture.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["store_or_reduce", "write_output", "partials_in_flight"]

#: Float32 registers per thread the last program may spend on partials requested together.
PARTIAL_REGISTERS = 64


def partials_in_flight(split_k: int, tile_elements: int, threads: int) -> int:
    """The largest divisor of ``split_k`` whose partial tiles (``tile_elements`` floats spread over ``threads``)
    fit :data:`PARTIAL_REGISTERS` per thread: how many partials the last program loads at once."""
    per_thread = max(1, -(-tile_elements // threads))
    return max(d for d in range(1, split_k + 1) if split_k % d == 0 and (d == 1 or d * per_thread <= PARTIAL_REGISTERS))


@triton.jit
def write_output(out_ptr, offsets, mask, value, GLU: tl.constexpr):
    """Store a finished float32 tile (cast to the output's dtype).  With ``GLU`` (1: SiLU, 2: tanh-GELU, see
    ``layout.GATED_ACTIVATIONS``) the tile is a 1-D run of interleaved ``(gate, up)`` columns and what is
    stored is ``act(gate) * up`` at half the column index: a gated MLP's activation done in the product's
    epilogue instead of in a kernel of its own.  tanh-GELU uses ``0.5 (1 + tanh z) = sigmoid(2 z)``."""
    if GLU != 0:
        gate, up = tl.split(tl.reshape(value, (value.shape[0] // 2, 2)))
        column, _ = tl.split(tl.reshape(offsets, (offsets.shape[0] // 2, 2)))
        keep, _ = tl.split(tl.reshape(mask.to(tl.int32), (offsets.shape[0] // 2, 2)))
        if GLU == 1:
            activated = gate * tl.sigmoid(gate)
        else:
            activated = gate * tl.sigmoid(1.5957691216057308 * (gate + 0.044715 * gate * gate * gate))
        tl.store(out_ptr + column // 2, (activated * up).to(out_ptr.dtype.element_ty), mask=keep != 0)
    else:
        tl.store(out_ptr + offsets, value.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def store_or_reduce(result, out_ptr, part_ptr, count_ptr, tile, offsets, mask, split_stride, pid_k,
                    SPLIT_K: tl.constexpr, GLU: tl.constexpr = 0, IN_FLIGHT: tl.constexpr = 0):
    """Write ``result`` (float32, any tile shape) to ``out_ptr + offsets``, or, with ``SPLIT_K`` > 1, to split
    ``pid_k``'s partials (``split_stride`` elements apart) and let the last of the tile's programs reduce.
    ``GLU``: see :func:`write_output` (the partials keep every column; the activation comes after the sum).
    ``IN_FLIGHT``: how many partials to load at once (a divisor of ``SPLIT_K``; 0: all of them).  The sum
    runs in split order within each batch, batches in order: deterministic for a given ``IN_FLIGHT``."""
    if SPLIT_K == 1:
        write_output(out_ptr, offsets, mask, result, GLU)
    else:
        tl.store(part_ptr + pid_k * split_stride + offsets, result, mask=mask)
        # Every thread's partial must be written before the arrival is counted (release, GPU scope).
        tl.debug_barrier()
        arrived = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel")
        if arrived == SPLIT_K - 1:
            BATCH: tl.constexpr = SPLIT_K if IN_FLIGHT == 0 else IN_FLIGHT
            total = tl.zeros_like(result)
            if BATCH == SPLIT_K:
                for split in tl.static_range(SPLIT_K):  # all partial loads in flight at once
                    total += tl.load(part_ptr + split * split_stride + offsets, mask=mask, other=0.0,
                                     cache_modifier=".cg")
            else:
                for first in range(0, SPLIT_K, BATCH):
                    batch = tl.zeros_like(result)
                    for split in tl.static_range(BATCH):  # one batch's loads in flight together
                        batch += tl.load(part_ptr + (first + split) * split_stride + offsets, mask=mask,
                                         other=0.0, cache_modifier=".cg")
                    total += batch
            write_output(out_ptr, offsets, mask, total, GLU)
            tl.atomic_xchg(count_ptr + tile, 0)
