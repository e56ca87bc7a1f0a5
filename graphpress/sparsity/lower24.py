"""Lower 2:4-sparse linears to NVIDIA's sparse tensor cores via ``torch.sparse.to_sparse_semi_structured``.

A 2:4 weight stored semi-structured holds half the values plus 2-bit indices, and a GEMM against it can run
up to twice as fast on Ampere/Hopper. It is not free: at a handful of tokens per call (decoding at batch 1)
the sparse kernel is slower than the dense one, and small matrices do not amortise the metadata. The choice
is therefore made per layer from its shape and the expected tokens per call; every decision is reported.
Lowering needs CUDA (compute capability >= 8.0) and fp16/bf16 weights (int8 when the caller's matmul is
int8: torch supports int8 semi-structured tensors, but only for int8 x int8 products, which the float
``nn.Linear`` path does not do, so int8 weights are reported as not lowered).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from .masks import SparsityPattern, satisfies

__all__ = ["Sparse24Lowering", "lowering_decision", "shape_decision", "lower_sparse24", "MIN_TOKENS", "MIN_FEATURES"]

# Below these the dense kernel is expected to win: PyTorch's semi-structured tutorial reports a loss at
# batch 1 and gains from a few hundred tokens on 4096-wide layers. benchmarks/bench_kernels.py (sparse
# section) measures it on the H100; tune these two from its table.
MIN_TOKENS = 128
MIN_FEATURES = 2048
_ROW_MULTIPLE, _COL_MULTIPLE = 64, 128  # cuSPARSELt / CUTLASS tile constraints for fp16/bf16
_TWO_FOUR = SparsityPattern(0.5, (2, 4))


@dataclass
class Sparse24Lowering:
    """Which linears were lowered and why each of the others was not."""

    lowered: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def shape_decision(rows: int, cols: int, dtype: torch.dtype, tokens: int) -> str | None:
    """None if a ``rows x cols`` weight of ``dtype`` gains from 2:4 at ``tokens`` tokens per call; else why not."""
    if dtype not in (torch.float16, torch.bfloat16):
        return f"dtype {dtype} (needs float16 or bfloat16)"
    if rows % _ROW_MULTIPLE or cols % _COL_MULTIPLE:
        return f"shape {rows}x{cols} is not a multiple of {_ROW_MULTIPLE}x{_COL_MULTIPLE}"
    if min(rows, cols) < MIN_FEATURES:
        return f"shape {rows}x{cols} too small to gain (needs both sides >= {MIN_FEATURES})"
    if tokens < MIN_TOKENS:
        return f"{tokens} tokens per call: the dense kernel is faster below {MIN_TOKENS}"
    return None


def lowering_decision(weight: torch.Tensor, tokens: int) -> str | None:
    """None if a linear with ``weight`` should be lowered at ``tokens`` tokens per call; otherwise why not."""
    if weight.device.type != "cuda":
        return f"weight on {weight.device.type}, not CUDA"
    reason = shape_decision(weight.shape[0], weight.shape[1], weight.dtype, tokens)
    if reason is not None:
        return reason
    if not satisfies(weight, _TWO_FOUR):
        return "weight is not 2:4 sparse"
    return None


def _cuda_support() -> str | None:
    """None if semi-structured sparsity can run here; otherwise the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA device: 2:4 lowering is a no-op on CPU"
    if torch.cuda.get_device_capability() < (8, 0):
        return "the GPU has no sparse tensor cores (needs compute capability >= 8.0)"
    return None


@torch.no_grad()
def lower_sparse24(model: nn.Module, *, tokens: int = 512, ignore: Sequence[str] = ("lm_head",)) -> Sparse24Lowering:
    """Replace the weights of qualifying 2:4 linears of ``model`` by semi-structured sparse tensors, in place."""
    result = Sparse24Lowering(reason=_cuda_support() or "")
    if result.reason:
        return result
    from torch.sparse import to_sparse_semi_structured

    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or any(fnmatch.fnmatchcase(name, p) for p in ignore):
            continue
        why_not = lowering_decision(module.weight, tokens)
        if why_not is not None:
            result.kept[name] = why_not
            continue
        module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
        result.lowered.append(name)
    return result
