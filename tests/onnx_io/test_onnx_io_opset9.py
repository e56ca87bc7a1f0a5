"""Opset-9 models in the dialects real exporters write, loaded, normalized, and written back losslessly.

Each model is built with onnx.helper at opset 9; the round trip (load_onnx -> to_onnx at opset 18) must
match onnxruntime on the original to a relative error of 1e-5, and the IR must hold the canonical forms.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.frontends import onnx_opset
from graphpress.frontends.onnx_import import load_onnx

RNG = np.random.default_rng(0)


def _array(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def _const(output: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [output], value=numpy_helper.from_array(array, f"{output}_value"))


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "opset9", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)


def _float(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def gemm_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=0),
    ]
    inits = [_init("W1", _array(16, 8)), _init("b1", _array(16)), _init("W2", _array(16, 4)), _init("b2", _array(1, 4))]
    return _model(nodes, [_float("x", [3, 8])], [_float("y", [3, 4])], inits)


def sum_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Sum", ["a", "b", "c"], ["s"]), helper.make_node("Sum", ["s"], ["y"])]
    return _model(nodes, [_float(n, [2, 5]) for n in "abc"], [_float("y", [2, 5])])


def constant_weights_model() -> onnx.ModelProto:
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [0.01])
    nodes = [
        _const("w", _array(8, 12)),
        _const("bias", _array(12)),
        helper.make_node("MatMul", ["x", "w"], ["mm"]),
        helper.make_node("Add", ["bias", "mm"], ["h"]),
        _const("w2_shape", np.array([12, 6], dtype=np.int64)),
        helper.make_node("ConstantOfShape", ["w2_shape"], ["w2"], value=fill),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ]
    return _model(nodes, [_float("x", ["batch", 5, 8])], [_float("y", ["batch", 5, 6])])


def channel_shuffle_model() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"], group=2),
        _const("split_shape", np.array([1, 2, 3, 4, 4], dtype=np.int64)),
        helper.make_node("Reshape", ["c", "split_shape"], ["g"]),
        helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
        _const("merge_shape", np.array([1, 6, 4, 4], dtype=np.int64)),
        helper.make_node("Reshape", ["t", "merge_shape"], ["y"]),
    ]
    return _model(nodes, [_float("x", [1, 4, 4, 4])], [_float("y", [1, 6, 4, 4])], [_init("conv_w", _array(6, 2, 1, 1))])


def attention_model() -> onnx.ModelProto:
    batch, seq, heads, head_dim = 2, 5, 2, 4
    width = heads * head_dim
    nodes = [helper.make_node("MatMul", ["x", f"W{n}"], [f"{n}_flat"]) for n in "qkv"]
    for n in "qkv":
        nodes += [
            helper.make_node("Reshape", [f"{n}_flat", "heads_shape"], [f"{n}_heads"]),
            helper.make_node("Transpose", [f"{n}_heads"], [n], perm=[0, 2, 1, 3]),
        ]
    nodes += [
        helper.make_node("Transpose", ["k"], ["k_t"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "k_t"], ["scores"]),
        _const("sqrt_d", np.array(np.sqrt(head_dim), dtype=np.float32)),
        helper.make_node("Div", ["scores", "sqrt_d"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=3),
        helper.make_node("MatMul", ["probs", "v"], ["ctx_heads"]),
        helper.make_node("Transpose", ["ctx_heads"], ["ctx_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_t", "merge_shape"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", "Wo"], ["y"]),
    ]
    inits = [_init(f"W{n}", _array(width, width)) for n in "qkvo"] + [
        _init("heads_shape", np.array([batch, seq, heads, head_dim], dtype=np.int64)),
        _init("merge_shape", np.array([batch, seq, width], dtype=np.int64)),
    ]
    return _model(nodes, [_float("x", [batch, seq, width])], [_float("y", [batch, seq, width])], inits)


CASES = {
    "gemm_transB": (gemm_model, {"Linear": 2, "Gemm": 0}),
    "sum": (sum_model, {"Add": 2, "Identity": 1, "Sum": 0}),
    "constant_weights": (constant_weights_model, {"Linear": 2, "Constant": 0, "ConstantOfShape": 0, "MatMul": 0, "Add": 0}),
    "channel_shuffle": (channel_shuffle_model, {"Reshape": 2, "Transpose": 1, "Constant": 0}),
    "attention": (attention_model, {"Linear": 4, "Softmax": 1, "MatMul": 2}),
}


def _inputs(model: onnx.ModelProto) -> list[np.ndarray]:
    shapes = [[d.dim_value or 3 for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    return [_array(*shape) for shape in shapes]


def _rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12))


@pytest.mark.parametrize("case", sorted(CASES))
def test_opset9_round_trip(case):
    build, expected_ops = CASES[case]
    original = build()
    graph = load_onnx(original)
    assert graph.opset == 18 and graph.metadata["onnx_import"]["original_opset"] == 9
    for op, count in expected_ops.items():
        assert len(graph.find(op)) == count, f"{op}: {[n.op for n in graph.nodes]}"
    for node in graph.nodes:
        for value in node.outputs:
            assert value.shape is not None and value.dtype is not None, value
    emitted = to_onnx(graph)
    assert [o.version for o in emitted.opset_import if o.domain == ""] == [18]
    inputs = _inputs(original)
    for got, want in zip(run_onnxruntime(emitted, inputs), run_onnxruntime(original, inputs)):
        assert got.shape == want.shape
        assert _rel_error(got, want) <= 1e-5


def test_gemm_weights_keep_initializer_names_and_fold_alpha_beta():
    original = gemm_model()
    graph = load_onnx(original)
    first, second = graph.find("Linear")
    weight, bias = first.inputs[1], first.inputs[2]
    assert (weight.name, weight.param.key, weight.shape) == ("W1", "W1", (16, 8))
    np.testing.assert_allclose(weight.param.data.numpy(), 0.5 * numpy_helper.to_array(original.graph.initializer[0]))
    assert bias.param.key == "b1" and bias.shape == (16,)
    assert second.inputs[1].shape == (4, 16)  # transB=0 weight stored as [out, in]
    assert first.scope == "" and first.outputs[0].name == "h"


def test_failed_conversion_keeps_the_original_opset(monkeypatch):
    def refuse(model, target):
        raise RuntimeError("adapter missing")

    monkeypatch.setattr(onnx_opset.version_converter, "convert_version", refuse)
    original = channel_shuffle_model()
    with pytest.warns(UserWarning, match="keeping opset 9"):
        graph = load_onnx(original)
    assert graph.opset == 9 and "adapter missing" in graph.metadata["onnx_import"]["conversion_problem"]
    emitted = to_onnx(graph)
    assert [o.version for o in emitted.opset_import if o.domain == ""] == [9]
    inputs = _inputs(original)
    np.testing.assert_allclose(run_onnxruntime(emitted, inputs)[0], run_onnxruntime(original, inputs)[0], rtol=1e-6)
