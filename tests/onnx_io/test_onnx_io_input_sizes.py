"""frontends/input_sizes.py and the inputs optimize() makes up for an ONNX model given without any."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphpress
from graphpress.errors import GraphpressError
from graphpress.frontends.input_sizes import fixed_symbol_sizes, input_shapes
from graphpress.frontends.onnx_import import load_onnx


def _model(nodes, inputs, inits, output="y"):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _patches(pos: int = 4):
    """x [b, c, h, w] -> Conv 8x8 stride 8 (c = 4) -> [b, 8, h*w/64] -> MatMul by a [pos, 5] table: the patches
    must number ``pos`` (h = w = 16 for 4; no square side for 3)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["xc", "W"], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Reshape", ["p", "shape"], ["f"]), helper.make_node("MatMul", ["f", "table"], ["y"])]
    inits = {"W": rng.standard_normal((8, 4, 8, 8)).astype(np.float32), "shape": np.array([0, 8, -1]),
             "table": rng.standard_normal((pos, 5)).astype(np.float32)}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "channels", "height", "width"])
    return _model(nodes, [x], inits)


def test_weights_fix_symbols_and_expressions_are_evaluated():
    graph = load_onnx(_patches())
    assert fixed_symbol_sizes(graph) == {"channels": 4}
    assert input_shapes(graph, free=16) == [(16, 4, 16, 16)]
    nodes = [helper.make_node("MatMul", ["tokens", "W"], ["h"]), helper.make_node("Add", ["h", "mask"], ["y"])]
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["b", "s", "d"]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["b", "s", "past + s"])]
    graph = load_onnx(_model(nodes, inputs, {"W": np.ones((6, 5), np.float32)}))
    assert input_shapes(graph, free=3) == [(3, 3, 6), (3, 3, 6)]


def test_optimize_finds_a_size_the_model_runs_on():
    model = _patches()
    result = graphpress.optimize(model, "dce")  # checked against inputs of side 16, the first size that runs
    assert result.graph.node


def test_a_model_no_size_fits_is_refused_with_advice():
    with pytest.raises(GraphpressError, match="example_inputs=.*--no-check"):
        graphpress.optimize(_patches(pos=3), "dce")  # h * w / 64 = 3 has no square solution
    assert graphpress.optimize(_patches(pos=3), "dce", check=False).graph.node
