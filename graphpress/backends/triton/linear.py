"""``TritonQuantLinear``: an ``nn.Module`` whose matmul runs on the fused-dequantization Triton kernels.

Built from any object that exposes the packing.py format (``qweight``, ``scales``, ``zeros``, ``bits``,
``group``, ``in_features``, ``out_features``, optional ``bias``), or from several of them at once: their
rows are concatenated into one weight (fused QKV with GQA, gate-up) and ``forward`` returns the split
outputs, so three decode-time GEMVs become one launch.

On a GPU it calls the ``graphpress::quant_matmul`` custom op.  Elsewhere (CPU without Triton's
interpreter) it dequantizes with torch and multiplies, and says so once in the ``graphpress`` log.
``kernel`` (also in ``extra_repr``) names the path in use, so a silent slow fallback cannot hide.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any, Sequence

import torch
from torch import nn

from graphpress.backends.triton.layout import (
    FLOAT16_SAFE_SCALE,
    GATED_ACTIVATIONS,
    KernelWeights,
    dequantize_kernel_weights,
    gated_columns,
    interleave_rows,
    kernel_weight,
    repack_for_kernels,
)
from graphpress.backends.triton.reference import PackedLinearWeight
from graphpress.errors import BackendError

__all__ = ["TritonQuantLinear", "triton_available"]

_log = logging.getLogger("graphpress")
_fallback_logged: set[str] = set()


# Decided once at import, as plain constants, so that torch.compile traces ``forward`` without touching
# the environment or importing anything.
_HAVE_TRITON = importlib.util.find_spec("triton") is not None
_INTERPRETER = os.environ.get("TRITON_INTERPRET", "0") == "1"
if _HAVE_TRITON:
    from graphpress.backends.triton import ops as _ops  # noqa: F401  (registers graphpress::quant_matmul)


def triton_available(device: torch.device) -> bool:
    """Whether the Triton kernels can run for tensors on ``device`` (a GPU, or the CPU interpreter)."""
    return _HAVE_TRITON and (device.type == "cuda" or (device.type == "cpu" and _INTERPRETER))


def _concat_quantized(parts: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Row-concatenate several packed weights (they must share bits, group and in_features)."""
    first = parts[0]
    for p in parts[1:]:
        if (p.bits, p.group, p.in_features) != (first.bits, first.group, first.in_features):
            raise BackendError(
                "fused projections must share bits, group and in_features; got "
                f"{[(q.bits, q.group, q.in_features) for q in parts]}"
            )
    qweight = torch.cat([p.qweight for p in parts])
    scales = torch.cat([p.scales for p in parts])
    zeros = torch.cat([p.zeros for p in parts])
    biases = [getattr(p, "bias", None) for p in parts]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([b if b is not None else torch.zeros(p.out_features, device=qweight.device)
                          for b, p in zip(biases, parts)])
    return qweight, scales, zeros, bias


class TritonQuantLinear(nn.Module):
    """A weight-only quantized linear layer (int4/int8 kernels; 2/3-bit codes run on the int8 kernel).

    ``split_sizes`` (one entry per fused projection) makes ``forward`` return a tuple of outputs.
    ``gated`` (built by :meth:`gated_from_quantized`; ``"silu"`` or ``"gelu_tanh"``): the weight holds a gated
    MLP's gate and up projections with interleaved rows, and ``forward`` returns ``act(x @ gate^T) * (x @ up^T)``;
    at one row the batch-1 kernel applies the activation in its epilogue (no separate elementwise kernel,
    half the output written).
    Buffers: ``packed``, ``scales``, ``offsets`` (and ``meta_pairs`` for int4) in kernel layout, and ``bias``;
    they move with ``.to()``.
    ``follows_product`` (default False): this layer's input is written by the graphpress product launched
    just before it (set by :func:`.lowering.chain_products` on a :class:`GatedMLP`'s down projection); on
    Hopper its batch-1 kernel then starts as that product's programmatic dependent (``pdl.py``).  It only
    changes timing, never results.
    """

    def __init__(self, weights: KernelWeights, bias: torch.Tensor | None = None,
                 split_sizes: Sequence[int] | None = None, gated: str | None = None) -> None:
        super().__init__()
        if gated is not None and (split_sizes or weights.out_features % 2 or gated not in GATED_ACTIVATIONS):
            raise BackendError(f"a gated layer needs an even number of interleaved (gate, up) rows, no split and "
                               f"an activation in {GATED_ACTIVATIONS}; got {gated!r}")
        self.gated = gated
        self.in_features = weights.in_features
        self.out_features = weights.out_features // 2 if gated else weights.out_features
        self.bits = weights.source_bits
        self.kernel_bits = weights.bits
        self.group = weights.group
        self.follows_product = False
        # dtype of the float weight the layer replaced: what ``weight`` gives code that reads it
        self.weight_dtype = weights.scales.dtype if weights.scales.is_floating_point() else torch.float32
        self.split_sizes = list(split_sizes) if split_sizes else [self.out_features]
        if sum(self.split_sizes) != self.out_features:
            raise BackendError(f"split_sizes {self.split_sizes} do not add up to {self.out_features} outputs")
        self.register_buffer("packed", weights.packed)
        self.register_buffer("scales", weights.scales)
        self.register_buffer("offsets", weights.offsets)
        self.register_buffer("meta_pairs", weights.meta_pairs)
        self.register_buffer("bias", bias)

    @classmethod
    def from_quantized(cls, quantized: Any | Sequence[Any], meta_dtype: torch.dtype | None = None) -> TritonQuantLinear:
        """Build from one packed-format object or a list of them (fused, outputs split in list order).

        ``meta_dtype`` stores scales and offsets.  Default: float16 for int4 (half the metadata bytes
        of float32, which is 6% of an int4 g128 weight's traffic; an offset of at most 15 steps keeps
        its rounding under 1% of a step), float32 otherwise (offsets up to 255 steps in int8 would
        round by 0.1 step in float16, while per-channel metadata costs no bandwidth) or when some
        scale is too small for float16.
        """
        parts = list(quantized) if isinstance(quantized, (list, tuple)) else [quantized]
        qweight, scales, zeros, bias = _concat_quantized(parts)
        if meta_dtype is None:
            float16_safe = parts[0].bits <= 4 and scales.abs().min().item() >= FLOAT16_SAFE_SCALE
            meta_dtype = torch.float16 if float16_safe else torch.float32
        weights = repack_for_kernels(qweight, scales, zeros, parts[0].bits, parts[0].group,
                                     parts[0].in_features, meta_dtype)
        # Several parts, or one layer quantized after its siblings were fused (its own ``split_sizes``).
        split = [p.out_features for p in parts] if len(parts) > 1 else getattr(parts[0], "split_sizes", None)
        layer = cls(weights, bias, split)
        layer.weight_dtype = getattr(parts[0], "compute_dtype", layer.weight_dtype)
        return layer

    @classmethod
    def gated_from_quantized(cls, gate: Any, up: Any, meta_dtype: torch.dtype | None = None,
                             activation: str = "silu") -> TritonQuantLinear:
        """One layer computing ``act(gate(x)) * up(x)`` from two packed-format weights of one shape."""
        if (gate.out_features, gate.in_features, gate.bits, gate.group) != (up.out_features, up.in_features, up.bits, up.group):
            raise BackendError("gate and up must share out_features, in_features, bits and group")
        bias = None
        if getattr(gate, "bias", None) is not None or getattr(up, "bias", None) is not None:
            zeros = torch.zeros(gate.out_features, device=gate.qweight.device)
            bias = interleave_rows(*(b if b is not None else zeros for b in (getattr(gate, "bias", None),
                                                                              getattr(up, "bias", None))))
        interleaved = PackedLinearWeight(
            interleave_rows(gate.qweight, up.qweight), interleave_rows(gate.scales, up.scales),
            interleave_rows(gate.zeros, up.zeros), gate.bits, gate.group, gate.in_features, 2 * gate.out_features, bias)
        built = cls.from_quantized(interleaved, meta_dtype)
        return cls(built.kernel_weights(), built.bias, gated=activation)

    def kernel_weights(self) -> KernelWeights:
        """The buffers as a :class:`KernelWeights` (what the kernels and the fallback consume)."""
        return KernelWeights(self.packed, self.scales, self.offsets, self.kernel_bits, self.bits, self.group,
                             self.in_features, self.packed.shape[1], self.meta_pairs)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized ``[out_features, in_features]`` weight (read-only), in the replaced layer's dtype.

        As ``QuantizedLinear.weight``: model code that reads ``linear.weight`` itself (torchvision's Swin
        attention) keeps running after ``lower-triton`` swapped the module. A gated module interleaves gate and
        up rows and has no single weight."""
        if self.gated:
            raise AttributeError("a gated TritonQuantLinear holds gate and up rows interleaved: no single weight")
        return kernel_weight(self.packed, self.scales, self.offsets, self.kernel_bits, self.group, self.in_features,
                             self.weight_dtype)

    @property
    def kernel(self) -> str:
        """Which path ``forward`` takes for the buffers' current device."""
        if triton_available(self.packed.device):
            if self.meta_pairs is not None and self.kernel_bits == 4:
                return "triton int4 (paired-float16 gemv at 1 row; tuned tensor-core kernels, swapped-operand first, above)"
            if self.meta_pairs is not None:
                return "triton int8 (paired-float16 gemv at 1 row; split-K dot / gemm above)"
            return f"triton int{self.kernel_bits} (gemv / split-K dot / gemm by batch size)"
        return "torch fallback (dequantize + matmul)"

    def extra_repr(self) -> str:
        fused = f", split_sizes={self.split_sizes}" if len(self.split_sizes) > 1 else ""
        fused += f", gated={self.gated}(gate) * up" if self.gated else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group={self.group}, bias={self.bias is not None}{fused}, kernel={self.kernel}")

    def _fallback(self, x: torch.Tensor) -> torch.Tensor:
        reason = (f"TritonQuantLinear on {x.device.type}: no Triton kernel for this device "
                  f"({'Triton not installed' if not _HAVE_TRITON else 'not a GPU'}), using torch dequantize+matmul")
        if reason not in _fallback_logged:
            _fallback_logged.add(reason)
            _log.warning("graphpress: %s", reason)
        weight_t = dequantize_kernel_weights(self.kernel_weights(), dtype=x.dtype)
        return x @ weight_t

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if x.shape[-1] != self.in_features:
            raise BackendError(f"expected input with {self.in_features} features, got shape {list(x.shape)}")
        glu = GATED_ACTIVATIONS.index(self.gated) + 1 if self.gated else 0
        epilogue = glu if self.bias is None else 0  # a bias comes before the activation
        if triton_available(x.device):
            out = torch.ops.graphpress.quant_matmul(x, self.packed, self.scales, self.offsets, self.kernel_bits,
                                                    self.group, self.in_features, self.meta_pairs, glu=epilogue,
                                                    follows_product=self.follows_product)
        else:
            out = self._fallback(x)
            out = gated_columns(out, self.gated) if epilogue else out
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        if self.gated and not epilogue:
            out = gated_columns(out, self.gated)
        if len(self.split_sizes) == 1:
            return out
        return tuple(out.split(self.split_sizes, dim=-1))
