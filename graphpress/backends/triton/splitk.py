"""Split-K finished inside the product's own launch: the last-arriving program adds the partials.

A K split gives narrow layers enough programs to fill the GPU, but summing the splits in a second
kernel costs a launch, which at decode sizes is as long as the product on a 4096 x 4096 weight.  Here
every program stores its float32 partial tile; an atomic arrival counter per output tile tells the last
one, which adds the partials in split order (deterministic) and writes the output, then resets the
counter to zero for the next launch.  The counters are one int32 buffer per device (``ops._counters``),
allocated before any CUDA-graph capture.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["store_or_reduce"]


@triton.jit
def store_or_reduce(result, out_ptr, part_ptr, count_ptr, tile, offsets, mask, split_stride, pid_k, SPLIT_K):
    """Write ``result`` (float32, any tile shape) to ``out_ptr + offsets``, or, with ``SPLIT_K`` > 1, to split
    ``pid_k``'s partials (``split_stride`` elements apart) and let the last of the tile's programs reduce."""
    if SPLIT_K == 1:
        tl.store(out_ptr + offsets, result.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(part_ptr + pid_k * split_stride + offsets, result, mask=mask)
        # Every thread's partial must be written before the arrival is counted (release, GPU scope).
        tl.debug_barrier()
        arrived = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel")
        if arrived == SPLIT_K - 1:
            total = tl.zeros_like(result)
            for split in range(SPLIT_K):
                total += tl.load(part_ptr + split * split_stride + offsets, mask=mask, other=0.0,
                                 cache_modifier=".cg")
            tl.store(out_ptr + offsets, total.to(out_ptr.dtype.element_ty), mask=mask)
            tl.atomic_xchg(count_ptr + tile, 0)
