"""ONNX for ``graphpress::QLinear``: ``com.microsoft::MatMulNBits`` for weight-only, QDQ for W8A8.

MatMulNBits computes ``(q - zero) * scale`` per block of ``block_size`` input columns, exactly graphpress's
storage format when ``block_size`` divides the group: a group of 576 (per channel) is written as 9 blocks
of 64 with its scale repeated. Codes of 2 and 3 bits ride in 4-bit slots (ONNX Runtime's kernels take 4 and
8 bits); zero points stay float so min-offset grids are exact.

With 8-bit activations (SmoothQuant W8A8) the weight is a real int8 ``DequantizeLinear`` (QDQ) and the
activation is quantized per token with the same arithmetic as the torch module (round, clip, rescale),
since per-token scales have no QuantizeLinear form.
"""

from __future__ import annotations

import logging

import torch

from ...ir import GRAPHPRESS_DOMAIN, Node
from ...quantization.packing import pack_codes, unpack_codes
from .registry import EmitContext, register_emitter

__all__ = ["emit_qlinear", "block_size_for"]

log = logging.getLogger("graphpress")


def block_size_for(group: int) -> int | None:
    """The largest power-of-two block (16..128) that divides ``group``, or None."""
    block = min(group & -group, 128)
    return block if block >= 16 else None


def _weights(node: Node):
    x, qweight, scales, zeros = node.inputs[:4]
    a = node.attrs
    codes = unpack_codes(qweight.param.data, a["bits"])
    return x, codes, scales.param.data.float(), zeros.param.data.float(), a


@register_emitter(GRAPHPRESS_DOMAIN, "QLinear")
def emit_qlinear(ctx: EmitContext, node: Node) -> None:
    x, codes, scales, zeros, a = _weights(node)
    k, n, group, bits = a["in_features"], a["out_features"], a["group"], a["bits"]
    act_input = ctx.name(x)
    if a.get("act_bits"):
        act_input = _per_token_fake_quant(ctx, act_input, a["act_bits"], node.name)
        if bits == 8 and torch.equal(zeros, zeros.round()) and group >= k:
            return _emit_qdq_int8(ctx, node, act_input, codes, scales, zeros, k)
    block = block_size_for(group)
    float_zero_8bit = bits == 8 and not torch.equal(zeros, zeros.round())
    if float_zero_8bit and group < k:
        block = None  # ONNX Runtime's 8-bit kernel takes only integer zero points
    bias = node.input(4)
    out = node.outputs[0].name
    if block is None:
        log.warning("graphpress: %s has group %d, which no MatMulNBits block size divides; writing its "
                    "weight dequantized in float", node.scope or node.name, group)
        weight = ((codes[:, :k].float() - zeros.repeat_interleave(group, 1)[:, :k])
                  * scales.repeat_interleave(group, 1)[:, :k])
        product = ctx.add_node("MatMul", [act_input, ctx.constant(weight.t().contiguous(), f"{node.name}_w")],
                               None if bias is not None else [out], hint=node.name)[0]
    else:
        emit_bits = 8 if bits == 8 else 4
        n_blocks = -(-k // block)
        repeat = group // block
        used = codes[:, : n_blocks * block]
        if used.shape[1] < n_blocks * block:  # never: Kp is a multiple of group, group of block
            raise AssertionError("packed weight shorter than its blocks")
        packed = pack_codes(used, emit_bits).reshape(n, n_blocks, block * emit_bits // 8)
        block_scales = scales.repeat_interleave(repeat, 1)[:, :n_blocks].reshape(-1)
        block_zeros = zeros.repeat_interleave(repeat, 1)[:, :n_blocks].reshape(-1)
        ctx.require_domain("com.microsoft", 1)
        dtype = x.dtype if x.dtype is not None and x.dtype.is_floating_point else torch.float32
        if float_zero_8bit:
            # Per channel: x (q - z) s = x (q s) - sum(x) (z s); the kernel gets zero points of 0.
            zero_points = ctx.constant(torch.zeros(n * n_blocks, dtype=torch.uint8), f"{node.name}_zero_points")
        else:
            zero_points = ctx.constant(block_zeros.to(dtype), f"{node.name}_zero_points")
        inputs = [act_input, ctx.constant(packed.contiguous(), f"{node.name}_B"),
                  ctx.constant(block_scales.to(dtype), f"{node.name}_scales"), zero_points]
        direct = bias is None and not float_zero_8bit
        product = ctx.add_node("MatMulNBits", inputs, [out] if direct else None, domain="com.microsoft",
                               hint=node.name, K=k, N=n, bits=emit_bits, block_size=block, accuracy_level=0)[0]
        if float_zero_8bit:
            row_sums = ctx.add_node("ReduceSum", [act_input, ctx.constant(torch.tensor([-1]), f"{node.name}_ax")],
                                    hint=node.name, keepdims=1)[0]
            offset = ctx.constant((zeros[:, 0] * scales[:, 0]).to(dtype), f"{node.name}_zs")
            correction = ctx.add_node("Mul", [row_sums, offset], hint=node.name)[0]
            product = ctx.add_node("Sub", [product, correction], None if bias is not None else [out],
                                   hint=node.name)[0]
    if bias is not None:
        ctx.add_node("Add", [product, ctx.name(bias)], [out], hint=f"{node.name}_bias")


def _per_token_fake_quant(ctx: EmitContext, x: str, bits: int, hint: str) -> str:
    """x -> round(x / s) clipped to +-(2^(b-1)-1), times s, with s = max|x| over the last axis / top."""
    top = float(2 ** (bits - 1) - 1)
    absmax = ctx.add_node("ReduceMax", [ctx.add_node("Abs", [x], hint=hint)[0],
                                        ctx.constant(torch.tensor([-1]), f"{hint}_axis")], hint=hint, keepdims=1)[0]
    floor = ctx.constant(torch.tensor(1e-8), f"{hint}_eps")
    scale = ctx.add_node("Div", [ctx.add_node("Max", [absmax, floor], hint=hint)[0],
                                 ctx.constant(torch.tensor(top), f"{hint}_top")], hint=hint)[0]
    rounded = ctx.add_node("Round", [ctx.add_node("Div", [x, scale], hint=hint)[0]], hint=hint)[0]
    clipped = ctx.add_node("Clip", [rounded, ctx.constant(torch.tensor(-top), f"{hint}_lo"),
                                    ctx.constant(torch.tensor(top), f"{hint}_hi")], hint=hint)[0]
    return ctx.add_node("Mul", [clipped, scale], hint=hint)[0]


def _emit_qdq_int8(ctx: EmitContext, node: Node, act: str, codes, scales, zeros, k: int) -> None:
    """Per-channel int8 weight as DequantizeLinear(int8, scale, zero) feeding a MatMul (QDQ form)."""
    signed = (codes[:, :k].to(torch.int16) - 128).to(torch.int8)  # shift to int8 so zero points fit
    zero_points = (zeros[:, 0] - 128).round().to(torch.int8)
    wq = ctx.constant(signed.t().contiguous(), f"{node.name}_wq")
    deq = ctx.add_node("DequantizeLinear", [wq, ctx.constant(scales[:, 0].contiguous(), f"{node.name}_wscale"),
                                            ctx.constant(zero_points, f"{node.name}_wzero")], hint=node.name, axis=1)[0]
    bias = node.input(4)
    out = node.outputs[0].name
    product = ctx.add_node("MatMul", [act, deq], None if bias is not None else [out], hint=node.name)[0]
    if bias is not None:
        ctx.add_node("Add", [product, ctx.name(bias)], [out], hint=f"{node.name}_bias")
