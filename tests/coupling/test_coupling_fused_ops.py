"""Coupling through onnxruntime's fused com.microsoft ops: each couples as the standard ops it fuses
(FusedMatMul with its transposes applied, FusedConv with its group and added Z, the Gelu family as
elementwise ops, SkipLayerNormalization as Add + LayerNormalization); fused attention stays whole with a
reason that names it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphpress.analysis.coupling import compute_coupling
from graphpress.frontends.onnx_import import load_onnx
from graphpress.testing.onnx_fused import fused_conv_net, fused_transformer_block


def _group_of(result, key: str, axis: int) -> set[tuple[str, int]]:
    for group in result.groups:
        if any(m.key == key and m.axis == axis for m in group.members):
            return {(m.key, m.axis) for m in group.members}
    raise AssertionError(f"{key} axis {axis} is in no group")


def test_transformer_block_couples_like_its_unfused_twin():
    result = compute_coupling(load_onnx(fused_transformer_block(sum_output=True)[0]))
    assert not result.uncovered
    # MatMuls by a constant are Linears (weights [out, in]); FusedMatMul(transB=1) reads "up" as stored,
    # [inner, hidden]: its axis 1 is the contracted hidden axis, its axis 0 the inner width
    hidden = _group_of(result, "embed", 0)
    assert hidden == {("embed", 0), ("up", 1), ("gamma", 0), ("beta", 0), ("down_b", 0), ("down", 0), ("head", 1)}
    assert _group_of(result, "up", 0) == {("up", 0), ("mid", 1)}  # through Gelu
    assert _group_of(result, "mid_b", 0) == {("mid", 0), ("mid_b", 0), ("down", 1)}  # FastGelu's bias
    prunable = [g for g in result.groups if not g.frozen.all()]
    assert len(prunable) == 3 and not any(g.frozen.any() for g in prunable)


def test_conv_net_couples_group_and_added_input():
    result = compute_coupling(load_onnx(fused_conv_net()[0]))
    assert not result.uncovered
    # FusedConv's Z input (the first conv's output) is added to the third conv's output channels
    assert {("w1", 0), ("b1", 0), ("w2", 0), ("w3", 0), ("w3", 1), ("b3", 0), ("head", 1)} <= _group_of(result, "w1", 0)
    grouped = next(n for n in result.state.node_ids if n.op == "FusedConv")
    assert "group" in result.state.node_ids[grouped]


def _attention_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("w0", (8, 8)), ("qkv", (8, 24)), ("qkv_b", (24,)), ("w1", (8, 4)))]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["a"]),
             helper.make_node("Attention", ["a", "qkv", "qkv_b"], ["o"], domain="com.microsoft", num_heads=2),
             helper.make_node("MatMul", ["o", "w1"], ["y"])]
    graph = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4])], inits,
                              value_info=[helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 4, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])


def test_fused_attention_stays_whole_and_says_why():
    result = compute_coupling(load_onnx(_attention_model()))
    assert list(result.uncovered.values()) == ["com.microsoft::Attention (fused attention: heads packed in one weight, kept whole)"]
    group = next(g for g in result.groups if any(m.key == "w0" and m.axis == 0 for m in g.members))  # Linear layout [out, in]
    assert group.frozen.all() and any("Attention" in why for why in group.frozen_reasons.values())
