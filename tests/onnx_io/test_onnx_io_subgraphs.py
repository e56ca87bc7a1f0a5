"""If/Loop bodies stay opaque, but the outer values they read are tracked as inputs of their node, so
passes that follow uses (dead-code elimination, replace_all_uses) cannot break them."""

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.frontends.onnx_import import load_onnx


def _if_model() -> onnx.ModelProto:
    out = helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, [2, 3])
    then_body = helper.make_graph([helper.make_node("Mul", ["h", "scale"], ["branch_out"])], "then", [], [out])
    else_body = helper.make_graph([helper.make_node("Neg", ["h"], ["branch_out"])], "else", [], [out])
    nodes = [
        helper.make_node("Relu", ["x"], ["h"]),
        helper.make_node("If", ["flag"], ["y"], then_branch=then_body, else_branch=else_body),
    ]
    graph = helper.make_graph(
        nodes,
        "branchy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(np.array(3.0, dtype=np.float32), "scale")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _feeds(flag: bool) -> list[np.ndarray]:
    return [np.arange(-3, 3, dtype=np.float32).reshape(2, 3), np.array(flag)]


def test_captured_outer_values_are_inputs_of_the_if_node():
    graph = load_onnx(_if_model())
    (branch,) = graph.find("If")
    assert [v.name for v in branch.inputs] == ["flag", "h", "scale"]
    assert branch.meta["onnx_input_count"] == 1
    relu_out = graph.find("Relu")[0].outputs[0]
    assert (branch, 1) in relu_out.uses  # a use-following pass sees that the body reads %h
    for flag in (True, False):
        np.testing.assert_allclose(run_onnxruntime(to_onnx(graph), _feeds(flag))[0], run_onnxruntime(_if_model(), _feeds(flag))[0])


def test_replacing_a_captured_value_keeps_the_body_working():
    graph = load_onnx(_if_model())
    relu = graph.find("Relu")[0]
    # A pass swaps Relu for Abs: the body still reads "h", so the emitter must alias the new value to it.
    abs_node = graph.make_node("Abs", [graph.inputs[0]], after=relu)
    abs_node.outputs[0].shape, abs_node.outputs[0].dtype = (2, 3), torch.float32
    graph.replace_all_uses(relu.outputs[0], abs_node.outputs[0])
    graph.remove(relu)
    got = run_onnxruntime(to_onnx(graph), _feeds(True))[0]
    np.testing.assert_allclose(got, 3.0 * np.abs(_feeds(True)[0]))
