"""``torch.ops.graphpress.qlinear``: the quantized linear as one opaque torch op.

``QuantizedLinear.forward`` calls it, so ``torch.export`` sees a single node per quantized layer (with a
fake implementation for shapes) instead of the unpacking arithmetic, and graphpress's torch frontend
lowers that node to ``graphpress::QLinear``: a quantized model traces, prunes nothing it shouldn't, and
exports to ONNX MatMulNBits. ``torch.ops.graphpress.dequantize_weight`` is the float weight of such a layer
(``QuantizedLinear.weight``, for model code that calls ``F.linear(x, layer.weight, layer.bias)`` itself), one
opaque node too, so that the frontend can turn that ``F.linear`` into the same ``QLinear``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from graphpress.quantization.packing import dequantize

__all__ = ["dequantize_weight", "qlinear", "quantize_activations_per_token"]


def quantize_activations_per_token(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric dynamic fake-quantization of ``x`` with one scale per token (last dim)."""
    top = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / top
    return torch.clamp(torch.round(x / scale), -top, top) * scale


@torch.library.custom_op("graphpress::qlinear", mutates_args=())
def qlinear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
            bias: Optional[torch.Tensor], bits: int, group: int, in_features: int, act_bits: int) -> torch.Tensor:
    """``x @ dequant(W)^T + bias``; ``act_bits=8`` first quantizes ``x`` per token."""
    if act_bits:
        x = quantize_activations_per_token(x, act_bits)
    weight = dequantize(qweight, scales, zeros, bits, group, in_features, x.dtype)
    return F.linear(x, weight, None if bias is None else bias.to(x.dtype))


@qlinear.register_fake
def _qlinear_fake(x, qweight, scales, zeros, bias, bits, group, in_features, act_bits):
    return x.new_empty((*x.shape[:-1], qweight.shape[0]))


@torch.library.custom_op("graphpress::dequantize_weight", mutates_args=())
def dequantize_weight(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bits: int, group: int,
                      in_features: int, dtype: torch.dtype) -> torch.Tensor:
    """The float weight ``[out_features, in_features]`` of packed codes, in ``dtype``."""
    return dequantize(qweight, scales, zeros, bits, group, in_features, dtype)


@dequantize_weight.register_fake
def _dequantize_weight_fake(qweight, scales, zeros, bits, group, in_features, dtype):
    return qweight.new_empty((qweight.shape[0], in_features), dtype=dtype)
