"""ONNX expansions of the IR's macro ops ``graphpress::Linear`` and ``graphpress::Attention``.

``Linear(X, W[out, in], B?)`` becomes ``Gemm(X, W, B, transB=1)`` when X is 2-D (one kernel, weight kept in
torch's layout) and otherwise ``MatMul(X, W^T) (+ Add B)``, with ``W^T`` stored as an initializer under W's
name so no Transpose runs at inference.

``Attention(Q, K, V, mask?)`` becomes the chain ``softmax(Q K^T * scale + mask) V`` that
``torch.nn.functional.scaled_dot_product_attention`` computes: K/V heads are repeated for grouped-query
attention (each K/V head serves ``q_heads / kv_heads`` consecutive query heads), ``is_causal`` masks with a
top-left aligned lower triangle (torch's convention), a boolean mask marks positions that take part and a
float mask is added. The expansion uses opset-15+ ops (Shape with start/end, Trilu).
"""

from __future__ import annotations

import math

import torch

from ...errors import BackendError
from ...ir import GRAPHPRESS_DOMAIN, Node, Value
from .registry import EmitContext, register_emitter

__all__ = ["emit_linear", "emit_attention"]

_ATTENTION_MIN_OPSET = 15


@register_emitter(GRAPHPRESS_DOMAIN, "Linear")
def emit_linear(ctx: EmitContext, node: Node) -> None:
    x, weight = node.inputs[0], node.inputs[1]
    bias = node.input(2)
    out = node.outputs[0].name
    if x.rank == 2 and ctx.opset >= 7:
        inputs = [ctx.name(x), ctx.weight(weight, transposed=False)] + ([ctx.name(bias)] if bias is not None else [])
        ctx.add_node("Gemm", inputs, [out], hint=node.name, transB=1)
        return
    product = ctx.add_node(
        "MatMul", [ctx.name(x), ctx.weight(weight, transposed=True)], [out] if bias is None else None, hint=node.name
    )[0]
    if bias is not None:
        ctx.add_node("Add", [product, ctx.name(bias)], [out], hint=f"{node.name}_bias")


def _static(value: Value, axis: int, what: str, node: Node) -> int:
    dim = value.shape[axis] if value.shape is not None and len(value.shape) == 4 else None
    if not isinstance(dim, int):
        raise BackendError(f"{node.describe()}: the {what} of %{value.name} must be a known number to write ONNX, got {dim!r}")
    return dim


def _repeat_heads(ctx: EmitContext, kv: str, kv_value: Value, groups: int, q_heads: int) -> str:
    """[b, h, s, d] -> [b, h*groups, s, d], each head repeated ``groups`` times consecutively."""
    axis = ctx.constant(torch.tensor([2], dtype=torch.int64), "axis2")
    expanded = ctx.add_node("Unsqueeze", [kv, axis], hint=f"{kv_value.name}_unsq")[0]
    reps = ctx.constant(torch.tensor([1, 1, groups, 1, 1], dtype=torch.int64), "gqa_reps")
    tiled = ctx.add_node("Expand", [expanded, reps], hint=f"{kv_value.name}_rep")[0]
    batch = ctx.add_node("Shape", [kv], hint="batch", start=0, end=1)[0]
    tail = ctx.add_node("Shape", [kv], hint="seq_dim", start=2, end=4)[0]
    heads = ctx.constant(torch.tensor([q_heads], dtype=torch.int64), "q_heads")
    target = ctx.add_node("Concat", [batch, heads, tail], hint="gqa_shape", axis=0)[0]
    return ctx.add_node("Reshape", [tiled, target], hint=f"{kv_value.name}_gqa")[0]


def _causal_mask(ctx: EmitContext, q: str, k: str) -> str:
    """Boolean [Lq, Lk] lower triangle (True = attend), sized at run time so the sequence may vary."""
    lq = ctx.add_node("Shape", [q], hint="q_len", start=-2, end=-1)[0]
    lk = ctx.add_node("Shape", [k], hint="k_len", start=-2, end=-1)[0]
    size = ctx.add_node("Concat", [lq, lk], hint="mask_shape", axis=0)[0]
    ones = ctx.add_node("ConstantOfShape", [size], hint="ones", value=torch.ones(1, dtype=torch.bool))[0]
    return ctx.add_node("Trilu", [ones], hint="causal", upper=0)[0]


@register_emitter(GRAPHPRESS_DOMAIN, "Attention")
def emit_attention(ctx: EmitContext, node: Node) -> None:
    if ctx.opset < _ATTENTION_MIN_OPSET:
        raise BackendError(f"{node.describe()}: writing Attention needs opset {_ATTENTION_MIN_OPSET}+, the graph is at {ctx.opset}")
    q_value, k_value, v_value = node.inputs[:3]
    mask_value = node.input(3)
    dtype = q_value.dtype or torch.float32
    q, k, v = ctx.name(q_value), ctx.name(k_value), ctx.name(v_value)
    rank = len(q_value.shape or ())
    if rank == 4:  # [b, h, s, d]: key/value heads may be fewer (GQA) and are repeated
        q_heads = _static(q_value, 1, "head count", node)
        kv_heads = _static(k_value, 1, "head count", node)
        if q_heads % kv_heads:
            raise BackendError(f"{node.describe()}: {q_heads} query heads do not split into {kv_heads} key/value "
                               "groups")
        if kv_heads != q_heads:
            k = _repeat_heads(ctx, k, k_value, q_heads // kv_heads, q_heads)
            v = _repeat_heads(ctx, v, v_value, q_heads // kv_heads, q_heads)
    elif rank < 3 or len(k_value.shape or ()) != rank:
        raise BackendError(f"{node.describe()}: attention over rank-{rank} queries and rank-"
                           f"{len(k_value.shape or ())} keys has no ONNX form here")
    # Other ranks (Hiera's [b, h, windows, s, d]) attend over the last two axes with every leading axis
    # broadcast, as SDPA does; GQA's repeat is only defined for the 4-D layout.
    scale = node.attrs.get("scale")
    if scale is None:
        head_size = q_value.shape[-1]
        if not isinstance(head_size, int):
            raise BackendError(f"{node.describe()}: the head size of %{q_value.name} must be a known number to write "
                               f"ONNX, got {head_size!r}")
        scale = 1.0 / math.sqrt(head_size)
    k_t = ctx.add_node("Transpose", [k], hint="k_t", perm=list(range(rank - 2)) + [rank - 1, rank - 2])[0]
    scores = ctx.add_node("MatMul", [q, k_t], hint="scores")[0]
    scores = ctx.add_node("Mul", [scores, ctx.constant(torch.tensor(scale, dtype=dtype), "scale")], hint="scaled")[0]
    masked_fill = ctx.constant(torch.tensor(float("-inf"), dtype=dtype), "neg_inf") if (
        node.attrs.get("is_causal") or (mask_value is not None and mask_value.dtype == torch.bool)
    ) else None
    if node.attrs.get("is_causal"):
        scores = ctx.add_node("Where", [_causal_mask(ctx, q, k), scores, masked_fill], hint="causal_scores")[0]
    if mask_value is not None:
        if mask_value.dtype == torch.bool:
            scores = ctx.add_node("Where", [ctx.name(mask_value), scores, masked_fill], hint="masked_scores")[0]
        else:
            scores = ctx.add_node("Add", [scores, ctx.name(mask_value)], hint="masked_scores")[0]
    probs = ctx.add_node("Softmax", [scores], hint="probs", axis=-1)[0]
    ctx.add_node("MatMul", [probs, v], [node.outputs[0].name], hint=node.name)
