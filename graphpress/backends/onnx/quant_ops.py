"""ONNX for ``graphpress::QLinear``: ``com.microsoft::MatMulNBits`` for weight-only, QDQ for W8A8.

MatMulNBits computes ``(q - zero) * scale`` per block of ``block_size`` input columns, exactly graphpress's
storage format when ``block_size`` divides the group: a group of 576 (per channel) is written as 9 blocks
of 64 with its scale repeated. Codes of 2 and 3 bits ride in 4-bit slots (ONNX Runtime's kernels take 4 and
8 bits). Float zero points (min-offset grids) stay exact through a small correction product, so that
onnxruntime's fast packed kernel still runs (see :func:`_emit_matmul_nbits`).

With 8-bit activations (SmoothQuant W8A8) the weight is a real int8 ``DequantizeLinear`` (QDQ) and the
activation is quantized per token with the same arithmetic as the torch module (round, clip, rescale),
since per-token scales have no QuantizeLinear form.
"""

from __future__ import annotations

import logging

import torch

from ...errors import BackendError
from ...frontends.onnx_dtypes import torch_to_onnx_dtype
from ...ir import GRAPHPRESS_DOMAIN, Node
from ...quantization.packing import pack_codes, unpack_codes
from .registry import EmitContext, register_emitter

__all__ = ["emit_qlinear", "block_size_for"]

log = logging.getLogger("graphpress")


def block_size_for(group: int) -> int | None:
    """The largest power-of-two block (16..128) that divides ``group``, or None."""
    block = min(group & -group, 128)
    return block if block >= 16 else None


def _float_dtype(value) -> torch.dtype:
    """The float type the activations of ``value`` have (float32 when unknown): every constant that meets
    them in an op must have it too, or onnxruntime refuses the model (float16 files)."""
    dtype = getattr(value, "dtype", None)
    return dtype if dtype is not None and dtype.is_floating_point else torch.float32


def _weights(node: Node):
    x, qweight, scales, zeros = node.inputs[:4]
    a = node.attrs
    codes = unpack_codes(qweight.param.data, a["bits"])
    return x, codes, scales.param.data.float(), zeros.param.data.float(), a


@register_emitter(GRAPHPRESS_DOMAIN, "TritonMatMul")
def refuse_triton_matmul(ctx: EmitContext, node: Node) -> None:
    """A lowered layer holds its weight in the Triton kernels' layout and runs only in PyTorch on a GPU."""
    raise BackendError(
        f"{node.scope or node.name} runs on graphpress's Triton kernels (lower-triton), which exist only in PyTorch; "
        "export the model to ONNX before lower-triton (a quantized layer is written as MatMulNBits or "
        "DequantizeLinear + MatMul)")


@register_emitter(GRAPHPRESS_DOMAIN, "QLinear")
def emit_qlinear(ctx: EmitContext, node: Node) -> None:
    x, codes, scales, zeros, a = _weights(node)
    k, group, bits = a["in_features"], a["group"], a["bits"]
    act_input = ctx.name(x)
    dtype = _float_dtype(x)
    if a.get("act_bits"):
        act_input = _per_token_fake_quant(ctx, act_input, a["act_bits"], node.name, dtype)
        if bits == 8 and torch.equal(zeros, zeros.round()) and group >= k:
            return _emit_qdq_int8(ctx, node, act_input, codes, scales.to(dtype), zeros, k)
    block = block_size_for(group)
    bias = node.input(4)
    out = node.outputs[0].name
    if block is None:
        log.warning("graphpress: %s has group %d, which no MatMulNBits block size divides; writing its "
                    "weight dequantized in float", node.scope or node.name, group)
        weight = ((codes[:, :k].float() - zeros.repeat_interleave(group, 1)[:, :k])
                  * scales.repeat_interleave(group, 1)[:, :k]).to(dtype)
        product = ctx.add_node("MatMul", [act_input, ctx.constant(weight.t().contiguous(), f"{node.name}_w")],
                               None if bias is not None else [out], hint=node.name)[0]
    else:
        product = _emit_matmul_nbits(ctx, node, act_input, x, codes, scales, zeros, block,
                                     None if bias is not None else out)
    if bias is not None:
        ctx.add_node("Add", [product, ctx.name(bias)], [out], hint=f"{node.name}_bias")


def _emit_matmul_nbits(ctx: EmitContext, node: Node, act_input: str, x, codes, scales, zeros, block: int,
                       out: str | None) -> str:
    """MatMulNBits with zero points onnxruntime can prepack; float zero points become a small correction.

    onnxruntime runs MatMulNBits on its packed kernels only with integer (uint8) zero points; float ones
    send it to a fallback that dequantizes the whole weight on every call (several times slower than the
    fp32 model). Integer zero points are written packed. Float ones are split off exactly:
    ``x (q - z) s = x (q - z0) s + sum_b(x) (z0 - z) s`` with ``z0`` the kernel's default zero point and
    ``sum_b(x)`` the sums of ``x`` over each block, so the big product stays on the fast kernel and the
    correction is two products of width ``K / block``.
    """
    a = node.attrs
    k, n, group, bits = a["in_features"], a["out_features"], a["group"], a["bits"]
    emit_bits = 8 if bits == 8 else 4  # codes of 2 and 3 bits ride in 4-bit slots
    n_blocks = -(-k // block)
    repeat = group // block
    used = codes[:, : n_blocks * block]
    if used.shape[1] < n_blocks * block:  # never: Kp is a multiple of group, group of block
        raise AssertionError("packed weight shorter than its blocks")
    packed = pack_codes(used, emit_bits).reshape(n, n_blocks, block * emit_bits // 8)
    block_scales = scales.repeat_interleave(repeat, 1)[:, :n_blocks]
    block_zeros = zeros.repeat_interleave(repeat, 1)[:, :n_blocks]
    ctx.require_domain("com.microsoft", 1)
    dtype = _float_dtype(x)
    inputs = [act_input, ctx.constant(packed.contiguous(), f"{node.name}_B"),
              ctx.constant(block_scales.reshape(-1).to(dtype), f"{node.name}_scales")]
    integral = torch.equal(block_zeros, block_zeros.round()) and bool(
        ((block_zeros >= 0) & (block_zeros <= 2**emit_bits - 1)).all())
    if integral:
        inputs.append(ctx.constant(_packed_zero_points(block_zeros, emit_bits), f"{node.name}_zero_points"))
    product = ctx.add_node("MatMulNBits", inputs, [out] if out is not None and integral else None,
                           domain="com.microsoft", hint=node.name, K=k, N=n, bits=emit_bits, block_size=block,
                           accuracy_level=4 if ctx.int8_compute else 0)[0]
    if integral:
        return product
    membership = torch.zeros(k, n_blocks, dtype=dtype)
    membership[torch.arange(k), torch.arange(k) // block] = 1.0
    offsets = ((2 ** (emit_bits - 1) - block_zeros.double()) * block_scales.double()).t().to(dtype)
    sums = ctx.add_node("MatMul", [act_input, ctx.constant(membership, f"{node.name}_blocks")], hint=node.name)[0]
    correction = ctx.add_node("MatMul", [sums, ctx.constant(offsets.contiguous(), f"{node.name}_zero_offsets")],
                              hint=node.name)[0]
    return ctx.add_node("Add", [product, correction], [out] if out is not None else None, hint=node.name)[0]


def _packed_zero_points(block_zeros: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 zero points ``[N, n_blocks]`` in MatMulNBits' packed layout (two 4-bit values a byte, low first)."""
    zero_points = block_zeros.round().to(torch.uint8)
    if bits == 4 and zero_points.shape[1] % 2:
        zero_points = torch.cat([zero_points, torch.zeros_like(zero_points[:, :1])], dim=1)
    return pack_codes(zero_points, bits).reshape(-1).contiguous()


def _per_token_fake_quant(ctx: EmitContext, x: str, bits: int, hint: str, dtype: torch.dtype = torch.float32) -> str:
    """x -> round(x / s) clipped to +-(2^(b-1)-1), times s, with s = max|x| over the last axis / top.

    The constants have the activations' ``dtype``; the floor under ``s`` is 1e-8, or the smallest normal
    number of a narrower type (1e-8 is zero in float16)."""
    top = float(2 ** (bits - 1) - 1)
    magnitude = ctx.add_node("Abs", [x], hint=hint)[0]
    if ctx.opset >= 18:  # axes became an input in opset 18 (a graph the converter could not upgrade is older)
        absmax = ctx.add_node("ReduceMax", [magnitude, ctx.constant(torch.tensor([-1]), f"{hint}_axis")], hint=hint,
                              keepdims=1)[0]
    else:
        absmax = ctx.add_node("ReduceMax", [magnitude], hint=hint, keepdims=1, axes=[-1])[0]
    floor = ctx.constant(torch.tensor(max(1e-8, torch.finfo(dtype).tiny), dtype=dtype), f"{hint}_eps")
    scale = ctx.add_node("Div", [ctx.add_node("Max", [absmax, floor], hint=hint)[0],
                                 ctx.constant(torch.tensor(top, dtype=dtype), f"{hint}_top")], hint=hint)[0]
    rounded = ctx.add_node("Round", [ctx.add_node("Div", [x, scale], hint=hint)[0]], hint=hint)[0]
    clipped = ctx.add_node("Clip", [rounded, ctx.constant(torch.tensor(-top, dtype=dtype), f"{hint}_lo"),
                                    ctx.constant(torch.tensor(top, dtype=dtype), f"{hint}_hi")], hint=hint)[0]
    return ctx.add_node("Mul", [clipped, scale], hint=hint)[0]


def _emit_qdq_int8(ctx: EmitContext, node: Node, act: str, codes, scales, zeros, k: int) -> None:
    """Per-channel int8 weight as DequantizeLinear(int8, scale, zero) feeding a MatMul (QDQ form)."""
    signed = (codes[:, :k].to(torch.int16) - 128).to(torch.int8)  # shift to int8 so zero points fit
    zero_points = (zeros[:, 0] - 128).round().to(torch.int8)
    wq = ctx.constant(signed.t().contiguous(), f"{node.name}_wq")
    dtype = scales.dtype
    # DequantizeLinear takes float16/bfloat16 scales only from opset 19; before, dequantize in float32 and cast.
    scale_dtype = dtype if ctx.opset >= 19 else torch.float32
    deq = ctx.add_node("DequantizeLinear", [wq, ctx.constant(scales[:, 0].to(scale_dtype).contiguous(), f"{node.name}_wscale"),
                                            ctx.constant(zero_points, f"{node.name}_wzero")], hint=node.name, axis=1)[0]
    if scale_dtype != dtype:
        deq = ctx.add_node("Cast", [deq], hint=node.name, to=torch_to_onnx_dtype(dtype))[0]
    bias = node.input(4)
    out = node.outputs[0].name
    product = ctx.add_node("MatMul", [act, deq], None if bias is not None else [out], hint=node.name)[0]
    if bias is not None:
        ctx.add_node("Add", [product, ctx.name(bias)], [out], hint=f"{node.name}_bias")
