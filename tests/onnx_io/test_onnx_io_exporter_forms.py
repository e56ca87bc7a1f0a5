"""ONNX forms other exporters write (benchmarks/onnx_sweep.py finds them): each test pins one fixed mechanism."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import graphpress
from graphpress.backends.onnx import run_onnxruntime
from graphpress.errors import FrontendError
from graphpress.frontends.onnx_import import load_onnx
from graphpress.testing.onnx_exporters import export_torch
from graphpress.testing.onnx_handmade import dynamic_reshape_attention, shared_initializer_mlp
from graphpress.testing.zoo import tiny_case


def _mlp_with(node: onnx.NodeProto, *, hidden: int = 16, opset: int = 17, domains=()) -> onnx.ModelProto:
    """x -> MatMul(W1) -> ``node`` (reads "h", writes "a") -> Mul(up) -> MatMul(W2) -> y, random weights."""
    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) / 4)  # noqa: E731
    inits = [w(hidden, 32), w(hidden, 32), w(32, hidden), w(hidden)]
    for tensor, name in zip(inits, ["W1", "Wu", "W2", "scale"]):
        tensor.name = name
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), node, helper.make_node("MatMul", ["x", "Wu"], ["u"]),
             helper.make_node("Mul", ["a", "u"], ["g"]), helper.make_node("MatMul", ["g", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, hidden])], inits)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def test_split_into_equal_pieces_by_num_outputs_survives_pruning(tmp_path):
    # The dynamo exporter writes chunk() as Split(num_outputs=2): pruned pieces of unequal width need sizes.
    path = str(tmp_path / "mobilenet.onnx")
    inputs = export_torch(tiny_case("mobilenet"), path, dynamo=True, opset=18)
    assert any(a.name == "num_outputs" for n in onnx.load(path).graph.node if n.op_type == "Split" for a in n.attribute)
    pruned, report = graphpress.optimize(path, "prune-channels{ratio=0.3}", return_report=True)
    assert report.records[-1].stats["achieved_ratio"] >= 0.25
    before, after = run_onnxruntime(onnx.load(path), inputs)[0], run_onnxruntime(pruned, inputs)[0]
    assert before.shape == after.shape


def test_float16_model_quantizes_to_int8_qdq_that_runs(tmp_path):
    # Constants of the per-token activation quantizer and the DequantizeLinear scales follow the fp16 model.
    path = str(tmp_path / "fp16.onnx")
    inputs = export_torch(tiny_case("resnet"), path, dynamo=False, opset=17, fp16=True)
    original = onnx.load(path)
    quantized = graphpress.optimize(path, "quantize{bits=8,group=0,act_bits=8}")
    assert any(n.op_type == "DequantizeLinear" for n in quantized.graph.node)
    expected, actual = (run_onnxruntime(m, inputs)[0].astype(np.float32) for m in (original, quantized))
    assert np.abs(actual - expected).max() <= 0.1 * np.abs(expected).max()


def test_onnxruntime_simplified_layer_norm_becomes_standard_ops():
    # onnxruntime's optimizer writes RMSNorm as SimplifiedLayerNormalization in the *default* domain.
    node = helper.make_node("SimplifiedLayerNormalization", ["h", "scale32"], ["a"], axis=-1, epsilon=1e-5)
    model = _mlp_with(node)
    model.graph.initializer.append(numpy_helper.from_array(np.linspace(0.5, 1.5, 32).astype(np.float32), "scale32"))
    graph = load_onnx(model)
    assert not graph.find("SimplifiedLayerNormalization") and graph.find("ReduceMean")
    assert graph.metadata["onnx_import"]["runtime_ops_lowered"] == 1
    x = np.random.default_rng(1).standard_normal((2, 4, 16)).astype(np.float32)
    expected = run_onnxruntime(model, [x])[0]
    result = graphpress.optimize(model, "dce")
    onnx.checker.check_model(result, full_check=True)
    np.testing.assert_allclose(run_onnxruntime(result, [x])[0], expected, rtol=1e-4, atol=1e-5)


def test_unknown_default_domain_op_is_refused_by_name():
    model = _mlp_with(helper.make_node("MadeUpFusion", ["h"], ["a"]))
    with pytest.raises(FrontendError, match="MadeUpFusion.*default ONNX domain"):
        load_onnx(model)


def test_channels_into_an_op_without_a_rule_are_frozen_and_named():
    # An op no schema describes (here of a custom domain onnxruntime can't run either, so the analysis is
    # checked, not a pruned run) has an output without a shape: the gate's Mul must not take it for a
    # scalar and prune the other side alone, and nothing flowing into it may shrink.
    from graphpress.analysis.coupling import compute_coupling
    from graphpress.frontends.onnx_import import load_onnx

    result = compute_coupling(load_onnx(_mlp_with(helper.make_node("Mystery", ["h"], ["a"], domain="com.example"),
                                                  domains=["com.example"])))
    assert list(result.uncovered.values()) == ["com.example::Mystery"]
    for key in ("W1", "Wu"):  # Linear layout [out, in]: axis 0 is the 32 gate channels
        group = next(g for g in result.groups if any(m.key == key and m.axis == 0 for m in g.members))
        assert group.frozen.all()


def test_channels_through_a_fused_runtime_activation_are_pruned():
    # com.microsoft::QuickGelu (onnxruntime's x * sigmoid(alpha x)) is elementwise: the gate shrinks through it.
    node = helper.make_node("QuickGelu", ["h"], ["a"], domain="com.microsoft", alpha=1.702)
    model = _mlp_with(node, domains=["com.microsoft"])
    x = np.random.default_rng(2).standard_normal((2, 4, 16)).astype(np.float32)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=(torch.from_numpy(x),),
                                         return_report=True)
    stats = report.records[-1].stats
    assert "frozen_by" not in stats and stats["achieved_ratio"] >= 0.25
    assert run_onnxruntime(pruned, [x])[0].shape == run_onnxruntime(model, [x])[0].shape


def test_initializer_shared_by_two_matmuls_is_written_once():
    model, inputs = shared_initializer_mlp()
    result = graphpress.optimize(model, "dce")
    weights = [t for t in result.graph.initializer if list(t.dims) == [32, 32]]
    assert len(weights) == 1
    np.testing.assert_allclose(run_onnxruntime(result, inputs)[0], run_onnxruntime(model, inputs)[0], rtol=1e-5, atol=1e-5)


def _storages(graph, op: str, index: int) -> set:
    from graphpress.ir import storage_binding

    return {id(storage_binding(n.inputs[index].param.binding)) for n in graph.nodes if n.op == op}


def test_readers_of_one_initializer_read_one_stored_tensor():
    # MatMul readers become Linears reading a transposed view, not a copy per reader; a Transpose node of
    # the tied embedding folds into a view of the Gather's table; an Identity of a weight is the weight.
    from graphpress.testing.onnx_handmade import shared_block_mlp, tied_embedding_lm

    assert len(_storages(load_onnx(shared_block_mlp()[0]), "Linear", 1)) == 2  # W1 and W2, each read twice
    graph = load_onnx(tied_embedding_lm()[0])
    assert _storages(graph, "Gather", 0) <= _storages(graph, "Linear", 1)
    model, _ = shared_initializer_mlp()
    model.graph.node.insert(0, helper.make_node("Identity", ["W"], ["W_again"]))
    model.graph.node[4].input[1] = "W_again"  # the second MatMul, as the legacy exporter writes shared layers
    assert len(_storages(load_onnx(model), "Linear", 1)) == 1


def test_tied_embedding_is_written_once():
    from graphpress.testing.onnx_handmade import tied_embedding_lm

    model, inputs = tied_embedding_lm()
    result = graphpress.optimize(model, "dce")
    assert sorted(tuple(t.dims) for t in result.graph.initializer if len(t.dims) == 2) == [(32, 64), (50, 32), (64, 32)]
    np.testing.assert_allclose(run_onnxruntime(result, inputs)[0], run_onnxruntime(model, inputs)[0], rtol=1e-5, atol=1e-5)


def test_heads_split_and_merged_by_run_time_shapes_prune_whole_heads():
    # The split shape is concat(shape(x)[:2], [heads, head_dim]), one Concat read by the q, k and v reshapes;
    # the merge reshape asks for -1, a width ONNX inference leaves unknown and the element count fixes.
    model, inputs = dynamic_reshape_attention()
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", return_report=True)
    stats = report.records[-1].stats
    assert stats["groups_pruned"] == 1 and stats["removed_params"] == 1048  # one head of four, q k v o
    onnx.checker.check_model(pruned, full_check=True)
    x = list(inputs.values())
    assert run_onnxruntime(pruned, x)[0].shape == run_onnxruntime(model, x)[0].shape
    heads = [numpy_helper.to_array(i).tolist() for i in pruned.graph.initializer if i.dims == [2]]
    assert [3, 8] in heads and [4, 8] not in heads
