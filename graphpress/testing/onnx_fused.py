"""Twin ONNX graphs built with ``onnx.helper``: one with onnxruntime's fused ``com.microsoft`` ops, one with
the standard ops they fuse, with the same weights.

onnxruntime's offline optimizer writes FusedConv, FusedMatMul, Gelu, FastGelu, SkipLayerNormalization;
graphpress must prune through them exactly as through what they replace. Each builder returns
``(fused, unfused, inputs)``: both models compute the same function (up to float rounding), declare no
value_info (as files from the legacy exporter), and pruning both by the same ratio must give models
that still agree. They are the fixtures of the fused-op tests in tests/coupling, tests/onnx_io and
tests/prune.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["fused_transformer_block", "fused_conv_net"]

_OPSET = 18
_MS = "com.microsoft"


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)


def _model(nodes, inputs, outputs, initializers: dict[str, np.ndarray], fused: bool) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in initializers.items()]
    graph = helper.make_graph(nodes, "fused" if fused else "unfused", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", _OPSET)] + ([helper.make_opsetid(_MS, 1)] if fused else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="onnx.helper")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _node(op: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], name=output, **attrs)


def _scalar(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.float32)))


def _erf_gelu(x: str, out: str) -> list[onnx.NodeProto]:
    """0.5 * x * (1 + erf(x / sqrt(2))), as exporters write GELU before opset 20."""
    return [_scalar(f"{out}_r2", np.sqrt(2.0)), _scalar(f"{out}_one", 1.0), _scalar(f"{out}_half", 0.5),
            _node("Div", [x, f"{out}_r2"], f"{out}_d"), _node("Erf", [f"{out}_d"], f"{out}_e"),
            _node("Add", [f"{out}_e", f"{out}_one"], f"{out}_p"), _node("Mul", [x, f"{out}_p"], f"{out}_m"),
            _node("Mul", [f"{out}_m", f"{out}_half"], out)]


def _tanh_gelu(x: str, out: str) -> list[onnx.NodeProto]:
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), onnxruntime's FastGelu."""
    return [_scalar(f"{out}_c", 0.044715), _scalar(f"{out}_k", np.sqrt(2.0 / np.pi)), _scalar(f"{out}_one", 1.0),
            _scalar(f"{out}_half", 0.5), _scalar(f"{out}_three", 3.0),
            _node("Pow", [x, f"{out}_three"], f"{out}_x3"), _node("Mul", [f"{out}_x3", f"{out}_c"], f"{out}_cx3"),
            _node("Add", [x, f"{out}_cx3"], f"{out}_in"), _node("Mul", [f"{out}_in", f"{out}_k"], f"{out}_kin"),
            _node("Tanh", [f"{out}_kin"], f"{out}_t"), _node("Add", [f"{out}_t", f"{out}_one"], f"{out}_p"),
            _node("Mul", [x, f"{out}_p"], f"{out}_m"), _node("Mul", [f"{out}_m", f"{out}_half"], out)]


def fused_transformer_block(width: int = 12, hidden: int = 16, inner: int = 32, classes: int = 8, seed: int = 0,
                            sum_output: bool = False):
    """embed -> FusedMatMul(transB, alpha) -> Gelu -> MatMul -> FastGelu(bias) -> MatMul ->
    SkipLayerNormalization(residual = embed, gamma, beta, bias) -> head; the hidden (residual) and the
    two inner widths are prunable. The unfused twin writes Transpose-free MatMuls, erf/tanh GELUs and
    Add + LayerNormalization. ``sum_output`` also reads SkipLayerNormalization's fourth output (the
    residual sum, as the next block of a real model does): the head reads ``norm + sum``."""
    rng = np.random.default_rng(seed)
    w = {"embed": _w(rng, width, hidden), "up": _w(rng, inner, hidden), "mid": _w(rng, inner, inner),
         "mid_b": _w(rng, inner), "down": _w(rng, inner, hidden), "gamma": 1 + _w(rng, hidden),
         "beta": _w(rng, hidden), "down_b": _w(rng, hidden), "head": _w(rng, hidden, classes)}
    alpha = 0.5
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, classes])
    common = [_node("MatMul", ["x", "embed"], "e")]
    fused = common + [
        helper.make_node("FusedMatMul", ["e", "up"], ["h"], name="h", domain=_MS, transB=1, alpha=alpha),
        helper.make_node("Gelu", ["h"], ["g"], name="g", domain=_MS),
        _node("MatMul", ["g", "mid"], "m"),
        helper.make_node("FastGelu", ["m", "mid_b"], ["f"], name="f", domain=_MS),
        _node("MatMul", ["f", "down"], "d"),
        helper.make_node("SkipLayerNormalization", ["d", "e", "gamma", "beta", "down_b"],
                         ["n", "", "", "s"] if sum_output else ["n"], name="n", domain=_MS, epsilon=1e-5),
    ]
    unfused_w = dict(w, up=np.ascontiguousarray(w["up"].T))
    unfused = common + [
        _node("MatMul", ["e", "up"], "h0"), _scalar("alpha", alpha), _node("Mul", ["h0", "alpha"], "h"),
        *_erf_gelu("h", "g"),
        _node("MatMul", ["g", "mid"], "m"), _node("Add", ["m", "mid_b"], "mb"), *_tanh_gelu("mb", "f"),
        _node("MatMul", ["f", "down"], "d"), _node("Add", ["d", "down_b"], "db"), _node("Add", ["db", "e"], "s"),
        _node("LayerNormalization", ["s", "gamma", "beta"], "n", epsilon=1e-5, axis=-1),
    ]
    head = [_node("Add", ["n", "s"], "ns"), _node("MatMul", ["ns", "head"], "y")] if sum_output else \
        [_node("MatMul", ["n", "head"], "y")]
    fused, unfused = fused + head, unfused + head
    inputs = {"x": rng.standard_normal((2, 5, width)).astype(np.float32)}
    return _model(fused, [x], [y], w, True), _model(unfused, [x], [y], unfused_w, False), inputs


def fused_conv_net(channels: int = 8, classes: int = 4, seed: int = 0):
    """FusedConv(Relu) -> grouped FusedConv(Clip 0..6; 4 groups of 2 channels, pruned by whole groups) ->
    FusedConv(Relu) adding the first conv's output (input Z) -> pool -> head. The unfused twin writes Conv,
    Relu, Clip and Add."""
    rng = np.random.default_rng(seed)
    c = channels
    w = {"w1": _w(rng, c, 3, 3, 3), "b1": _w(rng, c), "w2": _w(rng, c, c // 4, 3, 3), "b2": _w(rng, c),
         "w3": _w(rng, c, c, 1, 1), "b3": _w(rng, c), "head": _w(rng, c, classes)}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])
    pads = {"pads": [1, 1, 1, 1]}
    tail = [_node("GlobalAveragePool", ["c3"], "p"), _node("Flatten", ["p"], "fl"), _node("MatMul", ["fl", "head"], "y")]
    fused = [
        helper.make_node("FusedConv", ["x", "w1", "b1"], ["c1"], name="c1", domain=_MS, activation="Relu", **pads),
        helper.make_node("FusedConv", ["c1", "w2", "b2"], ["c2"], name="c2", domain=_MS, group=4, activation="Clip",
                         activation_params=[0.0, 6.0], **pads),
        helper.make_node("FusedConv", ["c2", "w3", "b3", "c1"], ["c3"], name="c3", domain=_MS, activation="Relu"),
        *tail,
    ]
    unfused = [
        _node("Conv", ["x", "w1", "b1"], "c1r", **pads), _node("Relu", ["c1r"], "c1"),
        _node("Conv", ["c1", "w2", "b2"], "c2r", group=4, **pads), _scalar("lo", 0.0), _scalar("hi", 6.0),
        _node("Clip", ["c2r", "lo", "hi"], "c2"),
        _node("Conv", ["c2", "w3", "b3"], "c3r"), _node("Add", ["c3r", "c1"], "c3s"), _node("Relu", ["c3s"], "c3"),
        *tail,
    ]
    inputs = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    return _model(fused, [x], [y], w, True), _model(unfused, [x], [y], w, False), inputs
