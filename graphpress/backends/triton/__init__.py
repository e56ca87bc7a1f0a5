"""Triton backend: weight-only int4/int8 matmuls with dequantization fused into the kernels.

* :class:`TritonQuantLinear` runs a packed-format weight (graphpress.quantization.packing) on the
  kernels, one or several fused projections at once, with a logged torch fallback off-GPU.
* :func:`lower_linear_modules` swaps a model's layers for it (and :func:`chain_products` marks the
  products launched as programmatic dependents of the one before).
* ``torch.ops.graphpress.quant_matmul`` is the custom op (torch.compile and CUDA graphs go through it).
* :func:`tune` fills the on-disk autotune cache (``~/.cache/graphpress``) ahead of graph capture.

Importing this package needs torch; Triton is imported when installed (without it, modules fall back).
"""

from typing import Iterable

import torch

from graphpress.backends.triton.layout import KernelWeights, dequantize_kernel_weights, repack_for_kernels
from graphpress.backends.triton.linear import TritonQuantLinear, triton_available
from graphpress.backends.triton.lowering import chain_products, is_packed_quantized, lower_linear_modules
from graphpress.backends.triton.reference import PackedLinearWeight, rtn_quantize

__all__ = [
    "KernelWeights",
    "PackedLinearWeight",
    "TritonQuantLinear",
    "chain_products",
    "dequantize_kernel_weights",
    "is_packed_quantized",
    "lower_linear_modules",
    "repack_for_kernels",
    "rtn_quantize",
    "triton_available",
    "tune",
]


def tune(module: TritonQuantLinear, rows: Iterable[int] = (1,), dtype: torch.dtype | None = None) -> dict:
    """Tune (or load from the disk cache) the kernel launch of ``module`` for each batch size in ``rows``.

    Call it before capturing CUDA graphs (``torch.compile(mode="reduce-overhead")``): timing cannot run
    inside a capture, where an untuned default would be used instead.
    """
    from graphpress.backends.triton.ops import tune as _tune

    return _tune(module.kernel_weights(), rows, dtype or torch.bfloat16)
