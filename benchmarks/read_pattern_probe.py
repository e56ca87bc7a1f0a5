"""How fast can a kernel *read* an int4 weight on this GPU, by access pattern (issue 6 diagnosis)?

The paired int4 GEMV streams its weight at about 1.75 TB/s while cuBLAS's bf16 GEMV reads its row-major
weight at 2.5 TB/s.  This probe separates the access pattern from the arithmetic: read-only Triton kernels
that XOR every loaded int32 (so no load is dead) over a qkv-sized packed weight (``[K/8, N]`` int32), with:

* ``contiguous``: each program reads one contiguous slice of the buffer (the best case);
* ``n-blocks``: the GEMV's pattern: program (column block, K split) reads ``[rows, BLOCK_N]`` tiles of
  the N-contiguous layout, rows ``N * 4`` bytes apart;
* ``k-rows``: the same bytes as a K-contiguous ``[N, K/8]`` layout, program = BLOCK_N rows, whole rows.

Timed like every kernel here (CUDA-graph replay over copies that defeat L2).  Run on the GPU machine:
``python3 benchmarks/read_pattern_probe.py``; prints one table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from read_floor import read_contiguous  # noqa: E402

from graphpress.backends.triton.timing import copies_to_defeat_l2, graph_time_us  # noqa: E402


@triton.jit
def _read_n_blocks(src, out, rows_per_split, N, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((ROWS, BLOCK_N), dtype=tl.int32)
    for row in range(pid_k * rows_per_split, (pid_k + 1) * rows_per_split, ROWS):
        acc ^= tl.load(src + (row + tl.arange(0, ROWS))[:, None] * N + cols[None, :])
    tl.store(out + pid_k * tl.num_programs(0) + pid_n, tl.xor_sum(tl.xor_sum(acc, axis=0), axis=0))


@triton.jit
def _read_k_rows(src, out, words_per_row, ROWS: tl.constexpr, WORDS: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    acc = tl.zeros((ROWS, WORDS), dtype=tl.int32)
    for word in range(0, words_per_row, WORDS):
        acc ^= tl.load(src + rows[:, None] * words_per_row + word + tl.arange(0, WORDS)[None, :])
    tl.store(out + tl.program_id(0), tl.xor_sum(tl.xor_sum(acc, axis=0), axis=0))


def main() -> None:
    n, k = 12288, 4096
    words = k // 8
    nbytes = n * words * 4
    copies = [torch.randint(-2**31, 2**31 - 1, (words, n), dtype=torch.int32, device="cuda")
              for _ in range(copies_to_defeat_l2(nbytes))]
    sink = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"device: {torch.cuda.get_device_name()}, {sms} SMs; buffer {nbytes / 1e6:.1f} MB (qkv int4 codes)")
    print("| pattern | launch | us | GB/s |")
    print("|---|---|---|---|")

    def report(name: str, launch: str, make_call) -> None:
        us = graph_time_us([make_call(c) for c in copies])
        print(f"| {name} | {launch} | {us:.1f} | {nbytes / us / 1e3:.0f} |", flush=True)

    for programs in (sms * 4, sms * 8, sms * 16):
        per = -(-(n * words) // programs)
        per = -(-per // 4096) * 4096
        grid = (-(-(n * words) // per),)
        if grid[0] * per != n * words:
            continue
        for warps in (4, 8):
            report("contiguous", f"{grid[0]} programs, {warps} warps",
                   lambda c, g=grid, p=per, w=warps: lambda: read_contiguous[g](c, sink, n * words, p, BLOCK=4096, num_warps=w))
    for block_n, rows, split, warps in ((64, 16, 4, 4), (128, 16, 4, 4), (256, 8, 2, 4), (512, 8, 2, 8),
                                        (1024, 4, 1, 8), (2048, 4, 1, 16)):
        grid = (n // block_n, split)
        report("n-blocks", f"BLOCK_N {block_n}, {rows} rows, split {split}, {warps} warps",
               lambda c, g=grid, r=rows, b=block_n, s=split, w=warps:
               lambda: _read_n_blocks[g](c, sink, words // s, n, ROWS=r, BLOCK_N=b, num_warps=w))
    for rows, width, warps in ((8, 128, 4), (16, 128, 4), (4, 256, 4), (32, 64, 4)):
        grid = (n // rows,)
        report("k-rows", f"{rows} rows x {width} words, {warps} warps",
               lambda c, g=grid, r=rows, wd=width, w=warps:
               lambda: _read_k_rows[g](c, sink, words, ROWS=r, WORDS=wd, num_warps=w))


if __name__ == "__main__":
    main()
