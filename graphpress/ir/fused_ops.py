"""What passes and backends need to know of onnxruntime's fused ``com.microsoft`` ops.

onnxruntime's offline optimizer (``SessionOptions.optimized_model_filepath`` at level "extended") writes
these into the files users hand graphpress. The IR keeps them as they are (domain ``com.microsoft``); the
coupling rules (:mod:`graphpress.analysis.coupling.rules_runtime_fused`) and the ONNX backend's shape
stand-ins (:mod:`graphpress.backends.onnx.shape_proxies`) read the facts below, so both agree on which
input is which.
"""

from __future__ import annotations

__all__ = ["MS_DOMAIN", "FUSED_ELEMENTWISE", "SKIP_NORM_INPUTS", "FUSED_ATTENTION"]

MS_DOMAIN = "com.microsoft"

FUSED_ELEMENTWISE = ("Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd")
"""Per-element activations (and bias/skip adds) whose inputs broadcast onto the output like an ``Add``."""

SKIP_NORM_INPUTS = {"SkipLayerNormalization": (2, 3, 4), "SkipSimplifiedLayerNormalization": (2, None, 3)}
"""Input positions of (gamma, beta or None, bias) of the skip layer norms; inputs 0 and 1 are the input and
the skip. Outputs: the normalized sum, mean, inverse std-dev (both sized 1 on the last axis), the sum."""

FUSED_ATTENTION = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
                   "PackedMultiHeadAttention", "DecoderMaskedMultiHeadAttention", "EmbedLayerNormalization")
"""Fused attention (and embedding) ops whose weights pack Q/K/V and heads counted by ``num_heads``."""
