"""Which output tile and which K split a tensor-core program computes (shared by both tensor-core kernels).

Grid axis 0 enumerates (row block, column block) pairs, column blocks fastest, so programs launched
together read neighbouring weight columns; axis 1 is the K split.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["program_tile"]


@triton.jit
def program_tile(N, k_per_split, k_limit, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """``(offs_m, offs_n, k_begin, k_end)`` of this program; its K range is clipped to ``k_limit``."""
    pid = tl.program_id(0)
    blocks_n = tl.cdiv(N, BLOCK_N)
    offs_m = (pid // blocks_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = (pid % blocks_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_begin = tl.program_id(1) * k_per_split
    return offs_m, offs_n, k_begin, tl.minimum(k_begin + k_per_split, k_limit)
