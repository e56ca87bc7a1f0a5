"""Small ONNX graphs built with ``onnx.helper`` in forms exporters write but graphpress's emitter does not.

Each builder returns ``(model, inputs)``: a checked ModelProto (opset 18, random weights from a fixed
seed) and numpy inputs by name. They are the hand-built rows of benchmarks/onnx_sweep.py and the
fixtures of the frontend's tests, so each form has one definition:

* :func:`shared_initializer_mlp`: one initializer read by two MatMuls (weight sharing / tying), chained so
  that both of its axes meet the graph's input and output: a tied pruner must leave it whole;
* :func:`shared_block_mlp`: one residual MLP block applied twice (ALBERT-style layer sharing), every
  weight and bias read by two nodes;
* :func:`tied_embedding_lm`: an embedding table read by ``Gather`` and, through ``Transpose``, by the LM
  head ``MatMul`` (tied input and output embeddings);
* :func:`constant_node_mlp`: weights and biases as ``Constant`` nodes instead of initializers;
* :func:`transpose_matmul_mlp`: weights stored ``[out, in]`` and transposed by a ``Transpose`` node;
* :func:`gemm_forms_mlp`: ``Gemm`` with ``transB`` 0 and 1, ``alpha``/``beta``, and ``Add(bias, MatMul)``;
* :func:`dynamic_reshape_attention`: heads split and merged by ``Reshape`` whose shape is computed from
  ``Shape``/``Gather``/``Concat`` on symbolic batch and sequence dims;
* :func:`constant_conv_net`: a conv net whose weights are ``Constant`` nodes and whose BatchNorm reads
  initializers shared by nothing else.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["HANDMADE", "shared_initializer_mlp", "shared_block_mlp", "tied_embedding_lm", "constant_node_mlp", "transpose_matmul_mlp", "gemm_forms_mlp",
           "dynamic_reshape_attention", "constant_conv_net"]

_OPSET = 18


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.array(array, order="C"), name)  # keeps 0-d arrays 0-d


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(array, order="C")))


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "handmade", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="onnx.helper")
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def _float_input(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def shared_initializer_mlp(hidden: int = 32) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``y = relu(x @ W + b1) @ W + b2``: ``W`` is one initializer read by both MatMuls."""
    rng = _rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "W"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["y"]),
    ]
    inits = [_init("W", _w(rng, hidden, hidden)), _init("b1", _w(rng, hidden)), _init("b2", _w(rng, hidden))]
    model = _model(nodes, [_float_input("x", ["batch", hidden])], [_float_input("y", ["batch", hidden])], inits)
    return model, {"x": rng.standard_normal((4, hidden)).astype(np.float32)}


def shared_block_mlp(hidden: int = 32, inner: int = 64) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``h = x + relu(x @ W1 + b1) @ W2 + b2``, then the same block (same initializers) on ``h``."""
    rng = _rng(6)
    nodes = []
    for i, (src, dst) in enumerate((("x", "h"), ("h", "y"))):
        t = lambda step, i=i: f"{step}_{i}"  # noqa: E731 - this block's intermediate names
        nodes += [
            helper.make_node("MatMul", [src, "W1"], [t("up")]), helper.make_node("Add", [t("up"), "b1"], [t("pre")]),
            helper.make_node("Relu", [t("pre")], [t("act")]), helper.make_node("MatMul", [t("act"), "W2"], [t("down")]),
            helper.make_node("Add", [t("down"), "b2"], [t("out")]), helper.make_node("Add", [src, t("out")], [dst]),
        ]
    inits = [_init("W1", _w(rng, hidden, inner)), _init("b1", _w(rng, inner)),
             _init("W2", _w(rng, inner, hidden)), _init("b2", _w(rng, hidden))]
    model = _model(nodes, [_float_input("x", ["batch", hidden])], [_float_input("y", ["batch", hidden])], inits)
    return model, {"x": rng.standard_normal((4, hidden)).astype(np.float32)}


def tied_embedding_lm(vocab: int = 50, hidden: int = 32, inner: int = 64) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``logits = (e + relu(e @ W1) @ W2) @ E^T`` with ``e = Gather(E, ids)``: ``E`` is read by the Gather and,
    through a ``Transpose`` node, by the LM head."""
    rng = _rng(7)
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["e"]),
        helper.make_node("MatMul", ["e", "W1"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("MatMul", ["b", "W2"], ["c"]), helper.make_node("Add", ["e", "c"], ["h"]),
        helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0]), helper.make_node("MatMul", ["h", "Et"], ["logits"]),
    ]
    inits = [_init("E", _w(rng, vocab, hidden)), _init("W1", _w(rng, hidden, inner)), _init("W2", _w(rng, inner, hidden))]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 8])
    model = _model(nodes, [ids], [_float_input("logits", ["batch", 8, vocab])], inits)
    return model, {"ids": rng.integers(0, vocab, (2, 8)).astype(np.int64)}


def constant_node_mlp(hidden: int = 32, inner: int = 64) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``y = relu(x @ W1 + b1) @ W2 + b2`` with every weight a ``Constant`` node (no initializers)."""
    rng = _rng(1)
    nodes = [
        _const("W1", _w(rng, hidden, inner)), _const("b1", _w(rng, inner)),
        _const("W2", _w(rng, inner, hidden)), _const("b2", _w(rng, hidden)),
        helper.make_node("MatMul", ["x", "W1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "W2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["y"]),
    ]
    model = _model(nodes, [_float_input("x", ["batch", 8, hidden])], [_float_input("y", ["batch", 8, hidden])])
    return model, {"x": rng.standard_normal((2, 8, hidden)).astype(np.float32)}


def transpose_matmul_mlp(hidden: int = 32, inner: int = 64) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Weights stored ``[out, in]`` (torch layout) and turned by ``Transpose`` nodes before each MatMul."""
    rng = _rng(2)
    nodes = [
        helper.make_node("Transpose", ["W1"], ["W1t"], perm=[1, 0]), helper.make_node("MatMul", ["x", "W1t"], ["h0"]),
        helper.make_node("Add", ["b1", "h0"], ["h1"]), helper.make_node("Sigmoid", ["h1"], ["s"]),
        helper.make_node("Mul", ["h1", "s"], ["h2"]),
        helper.make_node("Transpose", ["W2"], ["W2t"], perm=[1, 0]), helper.make_node("MatMul", ["h2", "W2t"], ["y"]),
    ]
    inits = [_init("W1", _w(rng, inner, hidden)), _init("b1", _w(rng, inner)), _init("W2", _w(rng, hidden, inner))]
    model = _model(nodes, [_float_input("x", ["batch", hidden])], [_float_input("y", ["batch", hidden])], inits)
    return model, {"x": rng.standard_normal((4, hidden)).astype(np.float32)}


def gemm_forms_mlp(hidden: int = 32, inner: int = 48) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``Gemm(transB=0, alpha, beta)``, then ``Gemm(transB=1)`` with a ``[1, out]`` C, then ``Add(b, MatMul)``."""
    rng = _rng(3)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h0"], alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h0"], ["h1"]),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["h2"], transB=1),
        helper.make_node("Tanh", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "W3"], ["h4"]), helper.make_node("Add", ["b3", "h4"], ["y"]),
    ]
    inits = [_init("W1", _w(rng, hidden, inner)), _init("b1", _w(rng, inner)),
             _init("W2", _w(rng, inner, inner)), _init("b2", _w(rng, 1, inner)),
             _init("W3", _w(rng, inner, hidden)), _init("b3", _w(rng, hidden))]
    model = _model(nodes, [_float_input("x", [4, hidden])], [_float_input("y", [4, hidden])], inits)
    return model, {"x": rng.standard_normal((4, hidden)).astype(np.float32)}


def dynamic_reshape_attention(hidden: int = 32, heads: int = 4) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Self-attention whose head split/merge reshapes take shapes computed at run time from ``Shape`` of
    the input (batch and sequence are symbolic), as the legacy exporter writes them with dynamic axes."""
    rng = _rng(4)
    head_dim = hidden // heads
    i64 = lambda name, values: _init(name, np.array(values, dtype=np.int64))  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Gather", ["shape", "one"], ["seq"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axis0"], ["batch1"]),
        helper.make_node("Unsqueeze", ["seq", "axis0"], ["seq1"]),
        helper.make_node("Concat", ["batch1", "seq1", "heads_hd"], ["split_shape"], axis=0),
        helper.make_node("Concat", ["batch1", "seq1", "minus1"], ["merge_shape"], axis=0),
    ]
    for name in ("q", "k", "v"):
        nodes += [
            helper.make_node("MatMul", ["x", f"W{name}"], [f"{name}0"]),
            helper.make_node("Add", [f"{name}0", f"b{name}"], [f"{name}1"]),
            helper.make_node("Reshape", [f"{name}1", "split_shape"], [f"{name}2"]),
            helper.make_node("Transpose", [f"{name}2"], [f"{name}3"], perm=[0, 2, 3, 1] if name == "k" else [0, 2, 1, 3]),
        ]
    nodes += [
        helper.make_node("MatMul", ["q3", "k3"], ["scores0"]),
        helper.make_node("Mul", ["scores0", "scale"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v3"], ["ctx0"]),
        helper.make_node("Transpose", ["ctx0"], ["ctx1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx1", "merge_shape"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", "Wo"], ["o0"]), helper.make_node("Add", ["o0", "bo"], ["o1"]),
        helper.make_node("Add", ["o1", "x"], ["y"]),
    ]
    inits = [i64("zero", 0), i64("one", 1), i64("axis0", [0]), i64("heads_hd", [heads, head_dim]), i64("minus1", [-1]),
             _init("scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))]
    for name in ("q", "k", "v", "o"):
        inits += [_init(f"W{name}", _w(rng, hidden, hidden)), _init(f"b{name}", _w(rng, hidden))]
    dims = ["batch", "seq", hidden]
    model = _model(nodes, [_float_input("x", dims)], [_float_input("y", dims)], inits)
    return model, {"x": rng.standard_normal((2, 6, hidden)).astype(np.float32)}


def constant_conv_net(channels: int = 16) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Conv -> BatchNorm -> Relu -> Conv -> GlobalAveragePool -> Flatten -> Gemm, the conv weights as
    ``Constant`` nodes."""
    rng = _rng(5)
    nodes = [
        _const("c1_w", _w(rng, channels, 3, 3, 3)), _const("c2_w", _w(rng, channels, channels, 3, 3)),
        helper.make_node("Conv", ["x", "c1_w"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["b1"]),
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2_w", "c2_b"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    inits = [_init("bn_s", rng.uniform(0.5, 1.5, channels).astype(np.float32)), _init("bn_b", _w(rng, channels)),
             _init("bn_m", _w(rng, channels)), _init("bn_v", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
             _init("c2_b", _w(rng, channels)), _init("fc_w", _w(rng, 10, channels)), _init("fc_b", _w(rng, 10))]
    model = _model(nodes, [_float_input("x", [2, 3, 16, 16])], [_float_input("y", [2, 10])], inits)
    return model, {"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}


HANDMADE = {
    "shared-initializer": shared_initializer_mlp,
    "shared-block": shared_block_mlp,
    "tied-embedding": tied_embedding_lm,
    "constant-nodes": constant_node_mlp,
    "transpose-matmul": transpose_matmul_mlp,
    "gemm-forms": gemm_forms_mlp,
    "dynamic-reshape": dynamic_reshape_attention,
    "constant-conv": constant_conv_net,
}
"""Builder of each hand-built form, by the name the sweep prints."""
