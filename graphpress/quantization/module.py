"""``QuantizedLinear``: a drop-in ``nn.Linear`` whose weight is stored packed (packing.py format).

The weight lives only as buffers ``qweight``/``scales``/``zeros`` (and ``bias``), so ``state_dict`` holds the
compressed form and a checkpoint is small. The CPU forward dequantizes the weight for each call and drops it
afterwards: caching the float weight would give back the memory the quantization saved (the read-only
``weight`` property dequantizes on demand, for model code that reads ``linear.weight`` itself). Kernels (Triton,
ONNX MatMulNBits exporters) read the same attributes: ``qweight, scales, zeros, bits, group, in_features``.
With ``act_bits=8`` the input is also quantized per token (dynamic symmetric int8), the W8A8 SmoothQuant path.
With ``split_sizes`` (a quantized ``FusedLinear``: q/k/v or gate/up fused before quantizing) ``forward`` returns
one output per fused projection, like the float fused module did.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from graphpress.quantization.grid import QuantizedWeight
from graphpress.quantization.packing import dequantize, padded_columns, slot_bits
from graphpress.quantization.torch_op import dequantize_weight, qlinear, quantize_activations_per_token

__all__ = ["QuantizedLinear", "quantize_activations_per_token"]


class QuantizedLinear(nn.Module):
    """Linear layer with a weight quantized to ``bits`` bits in groups of ``group`` input columns."""

    def __init__(self, in_features: int, out_features: int, *, bits: int, group: int, bias: bool = False,
                 act_bits: Optional[int] = None, dtype: torch.dtype = torch.float32,
                 split_sizes: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.split_sizes = [int(s) for s in split_sizes] if split_sizes else None
        if self.split_sizes is not None and sum(self.split_sizes) != out_features:
            raise ValueError(f"split_sizes {self.split_sizes} do not add up to {out_features} outputs")
        self.bits, self.group, self.act_bits = bits, group, act_bits
        padded = padded_columns(in_features, group)
        self.register_buffer("qweight", torch.zeros(out_features, padded * slot_bits(bits) // 8, dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(out_features, padded // group, dtype=torch.float32))
        self.register_buffer("zeros", torch.zeros(out_features, padded // group, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)
        self.compute_dtype = dtype

    @classmethod
    def from_weight(cls, quantized: QuantizedWeight, bias: Optional[torch.Tensor] = None,
                    act_bits: Optional[int] = None, split_sizes: Optional[Sequence[int]] = None) -> "QuantizedLinear":
        """Wrap an already quantized weight (and an optional float bias)."""
        out_features = quantized.qweight.shape[0]
        dtype = bias.dtype if bias is not None else torch.float32
        module = cls(quantized.in_features, out_features, bits=quantized.bits, group=quantized.group,
                     bias=bias is not None, act_bits=act_bits, dtype=dtype, split_sizes=split_sizes)
        module.qweight.copy_(quantized.qweight)
        module.scales.copy_(quantized.scales)
        module.zeros.copy_(quantized.zeros)
        if bias is not None:
            module.bias.copy_(bias.detach())
        return module.to(quantized.qweight.device)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, bits: int = 4, group: int = 128, sym: bool = False,
                    act_bits: Optional[int] = None) -> "QuantizedLinear":
        """Round-to-nearest quantization of an ``nn.Linear`` (``group <= 0``: per output channel)."""
        quantized = QuantizedWeight.round_to_nearest(linear.weight.detach(), bits, group, sym)
        module = cls.from_weight(quantized, linear.bias, act_bits)
        module.compute_dtype = linear.weight.dtype
        return module

    def dequantized_weight(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The float weight ``[out_features, in_features]`` (computed, not cached)."""
        return dequantize(self.qweight, self.scales, self.zeros, self.bits, self.group, self.in_features,
                          dtype or self.compute_dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float weight ``[out_features, in_features]`` in the original dtype (read-only).

        For model code that reads a linear's weight itself instead of calling the module (torchvision's Swin
        attention does ``F.linear(x, self.qkv.weight, self.qkv.bias)``): such code keeps running after the swap,
        on the quantized values. Computed on every read, through one opaque op that graphpress's frontend turns,
        with the ``F.linear`` reading it, back into a ``QLinear`` when the model is traced again."""
        return dequantize_weight(self.qweight, self.scales, self.zeros, self.bits, self.group, self.in_features,
                                 self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = qlinear(x, self.qweight, self.scales, self.zeros, self.bias, self.bits, self.group,
                      self.in_features, self.act_bits or 0)
        return tuple(out.split(self.split_sizes, dim=-1)) if self.split_sizes else out

    def rows(self, start: int, stop: int) -> "QuantizedLinear":
        """Output rows ``start:stop`` as a layer of their own (one projection of a fused layer): rows are
        quantized independently, so slicing the codes, scales and zeros is exact."""
        part = QuantizedLinear(self.in_features, stop - start, bits=self.bits, group=self.group,
                               bias=self.bias is not None, act_bits=self.act_bits, dtype=self.compute_dtype)
        part = part.to(self.qweight.device)
        for name in ("qweight", "scales", "zeros") + (("bias",) if self.bias is not None else ()):
            getattr(part, name).copy_(getattr(self, name)[start:stop])
        return part

    def extra_repr(self) -> str:
        activations = f", act_bits={self.act_bits}" if self.act_bits else ""
        split = f", split_sizes={self.split_sizes}" if self.split_sizes else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group={self.group}, bias={self.bias is not None}{activations}{split}")
