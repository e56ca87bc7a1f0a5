"""The read floor: how long the GPU takes just to *read* a given number of bytes, timed like every kernel here.

A weight-only product at batch 1 must read every byte of its weights once; nothing it does can be faster
than a kernel that reads those bytes and does no arithmetic.  :func:`read_floor_us` times XOR-reducing
read-only kernels over a buffer of exactly that size (CUDA-graph replay over copies that defeat L2, as in
``bench_kernels.py``) and returns the fastest of a few launch shapes.  It is an upper bound on the true
floor (a better read kernel could exist), so a target below it is out of reach only by that margin; the
table prints both so the reader can judge.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from graphpress.backends.triton.timing import copies_to_defeat_l2, graph_time_us

__all__ = ["read_contiguous", "read_floor_us"]

_BLOCK = 4096  # int32 elements per program iteration: 16 KB, 16 bytes per thread per load at 8 warps


@triton.jit
def read_contiguous(src, out, numel, per_program, BLOCK: tl.constexpr):
    """Program ``p`` XOR-reduces ``src[p * per_program : (p + 1) * per_program]`` (int32) into ``out[p]``."""
    start = tl.program_id(0) * per_program
    acc = tl.zeros((BLOCK,), dtype=tl.int32)
    for offset in range(start, start + per_program, BLOCK):
        index = offset + tl.arange(0, BLOCK)
        acc ^= tl.load(src + index, mask=index < numel, other=0)
    tl.store(out + tl.program_id(0), tl.xor_sum(acc, axis=0))


def read_floor_us(nbytes: int, device: str = "cuda") -> tuple[float, str]:
    """Fastest read of ``nbytes`` (rounded up to 4) over several launch shapes: (microseconds, the launch)."""
    numel = -(-nbytes // 4)
    copies = [torch.randint(-2**31, 2**31 - 1, (numel,), dtype=torch.int32, device=device)
              for _ in range(copies_to_defeat_l2(numel * 4))]
    multiprocessors = torch.cuda.get_device_properties(device).multi_processor_count
    sink = torch.empty(multiprocessors * 32, dtype=torch.int32, device=device)
    best: tuple[float, str] | None = None
    for per_sm in (2, 4, 8, 16, 32):
        blocks = -(-numel // _BLOCK)
        per_program = -(-blocks // (multiprocessors * per_sm)) * _BLOCK
        grid = (-(-numel // per_program),)
        for warps in (4, 8):
            calls = [lambda c=c, g=grid, p=per_program, w=warps:
                     read_contiguous[g](c, sink, numel, p, BLOCK=_BLOCK, num_warps=w) for c in copies]
            us = graph_time_us(calls)
            if best is None or us < best[0]:
                best = (us, f"{grid[0]} programs x {per_program * 4 // 1024} KB, {warps} warps")
    del copies
    return best
