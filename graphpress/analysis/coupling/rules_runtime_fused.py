"""Coupling rules of onnxruntime's fused ``com.microsoft`` ops: each couples as the ops it was fused from.

onnxruntime's offline optimizer (level "extended") rewrites Conv + activation as FusedConv, MatMul with a
transpose or a scale as FusedMatMul, Gemm + activation as FusedGemm, the erf/tanh/sigmoid GELU patterns as
Gelu / FastGelu / BiasGelu / QuickGelu, and residual Add + LayerNormalization (or RMSNorm) as
SkipLayerNormalization / SkipSimplifiedLayerNormalization. Their activations act per element and their
attributes spell no channel count except a grouped FusedConv's ``group`` (remembered here, rewritten by the
pruner like Conv's), so pruning through them only slices their weights.

The fused attention ops (Attention, MultiHeadAttention, ...) pack Q/K/V and the heads into one weight and
a ``num_heads`` attribute; they keep every channel, with a reason that names them.
"""

from __future__ import annotations

from ...ir import Node
from ...ir.fused_ops import FUSED_ATTENTION, FUSED_ELEMENTWISE, MS_DOMAIN, SKIP_NORM_INPUTS
from .rules import coupling_rule
from .rules_elementwise import broadcast_labels, elementwise
from .rules_layers import conv, gemm, matmul_transposed
from .rules_norms import couple_norm_weights
from .state import CouplingState

__all__ = ["fused_conv", "fused_matmul", "skip_norm", "fused_attention"]

coupling_rule("FusedGemm", domain=MS_DOMAIN)(gemm)
coupling_rule(*FUSED_ELEMENTWISE, domain=MS_DOMAIN)(elementwise)


@coupling_rule("FusedConv", domain=MS_DOMAIN)
def fused_conv(state: CouplingState, node: Node) -> None:
    """Conv(X, W, B), then activation(... + Z): Z, when given, is added to the output channel by channel."""
    conv(state, node)
    z, out = node.input(3), node.outputs[0]
    if z is not None and out.shape is not None:
        state.set(out, broadcast_labels(state, node, [out, z], len(out.shape)))


@coupling_rule("FusedMatMul", domain=MS_DOMAIN)
def fused_matmul(state: CouplingState, node: Node) -> None:
    """MatMul of the operands transposed on their last two axes (``transA``/``transB``), times ``alpha``."""
    if int(node.attrs.get("transBatchA", 0)) or int(node.attrs.get("transBatchB", 0)):
        state.uncovered[node.name] = f"{node.qualified_op} (transBatchA/transBatchB: batch axes moved into the matrix)"
        state.freeze_all(node, f"{node.qualified_op} with transBatchA/transBatchB is not pruned through")
        return
    matmul_transposed(state, node, bool(node.attrs.get("transA", 0)), bool(node.attrs.get("transB", 0)))


@coupling_rule(*SKIP_NORM_INPUTS, domain=MS_DOMAIN)
def skip_norm(state: CouplingState, node: Node) -> None:
    """``s = input + skip (+ bias)``; ``output = norm(s) * gamma (+ beta)`` over the last axis.

    The sum couples like a residual Add, gamma/beta/bias shrink with the last axis (like LayerNormalization's
    weights), outputs 1 and 2 (mean, inverse std-dev, sized 1 on the last axis) keep the leading axes, and
    output 3 is the sum itself."""
    gamma, beta, bias = SKIP_NORM_INPUTS[node.op]
    out = node.outputs[0]
    rank = len(out.shape or ())
    summed = [v for v in (node.input(0), node.input(1), node.input(bias)) if v is not None]
    labels = broadcast_labels(state, node, summed, rank)
    channel = labels[-1] if labels else None
    couple_norm_weights(state, node, channel, [node.input(i) if i is not None else None for i in (gamma, beta)], -1)
    state.set(out, labels)
    for k, extra in enumerate(node.outputs[1:], start=1):
        state.set(extra, labels if k == 3 else list(labels[:-1]) + [None])


@coupling_rule(*FUSED_ATTENTION, domain=MS_DOMAIN)
def fused_attention(state: CouplingState, node: Node) -> None:
    """Heads packed into one weight and counted by ``num_heads``: every channel through it is kept."""
    state.uncovered[node.name] = f"{node.qualified_op} (fused attention: heads packed in one weight, kept whole)"
    state.freeze_all(node, f"{node.qualified_op} packs attention heads into one weight; graphpress keeps it whole")
