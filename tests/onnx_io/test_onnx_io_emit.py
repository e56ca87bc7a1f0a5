"""The ONNX emitter on IR built the way the torch frontend builds it: macro ops, weights bound to a module,
the emitter registry, atomic saving, shape refresh after pruning, and meta-device graphs."""

import math
import os

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from graphpress.backends.onnx import infer_shapes, register_emitter, run_onnxruntime, save_onnx, to_onnx
from graphpress.errors import BackendError
from graphpress.ir import GRAPHPRESS_DOMAIN, Graph, ModuleBinding, Parameter, verify


def _mlp_graph(module: torch.nn.Sequential, x_shape) -> Graph:
    """x -> Linear(0) -> Relu -> Linear(2), parameters bound to ``module``."""
    graph = Graph("mlp", origin="torch")
    graph.module = module
    value = graph.add_input("x", x_shape, torch.float32)
    for index in (0, 2):
        weight = graph.add_constant(Parameter(ModuleBinding(module, f"{index}.weight")))
        bias = graph.add_constant(Parameter(ModuleBinding(module, f"{index}.bias")))
        value = graph.make_node("Linear", [value, weight, bias], domain=GRAPHPRESS_DOMAIN, scope=str(index)).outputs[0]
        if index == 0:
            value = graph.make_node("Relu", [value]).outputs[0]
    graph.outputs = [value]
    infer_shapes(graph)
    verify(graph)
    return graph


def _mlp(width: int = 16, hidden: int = 32, out: int = 8) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, out)).eval()


@pytest.mark.parametrize("x_shape, matmul_ops", [(("batch", 16), {"Gemm"}), ((2, "seq", 16), {"MatMul", "Add"})])
def test_linear_numerics_and_layout(x_shape, matmul_ops):
    module = _mlp()
    graph = _mlp_graph(module, x_shape)
    assert graph.outputs[0].shape == x_shape[:-1] + (8,)
    model = to_onnx(graph)
    assert {n.op_type for n in model.graph.node} - {"Relu"} == matmul_ops
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    # Gemm keeps torch's [out, in]; MatMul reads the transposed weight under the same name.
    assert weights["0.weight"] == ((32, 16) if "Gemm" in matmul_ops else (16, 32))
    x = torch.randn(*[d if isinstance(d, int) else 3 for d in x_shape])
    torch.testing.assert_close(run_onnxruntime(graph, [x])[0], module(x).detach(), rtol=1e-5, atol=1e-5)


def test_weight_read_in_two_layouts_is_written_once():
    """A tied table read as is (Gather) and transposed (the LM head's MatMul) is one initializer and a
    Transpose node, so the file does not hold the table twice."""
    graph = Graph("tied", origin="torch")
    table = torch.randn(10, 6)
    from graphpress.ir import DetachedBinding

    ids = graph.add_input("ids", (2, 3), torch.int64)
    weight = graph.add_constant(Parameter(DetachedBinding("embed.weight", table)))
    hidden = graph.make_node("Gather", [weight, ids]).outputs[0]
    logits = graph.make_node("Linear", [hidden, weight], domain=GRAPHPRESS_DOMAIN).outputs[0]
    graph.outputs = [logits]
    infer_shapes(graph)
    assert logits.shape == (2, 3, 10)
    model = to_onnx(graph)
    assert sorted(tuple(t.dims) for t in model.graph.initializer) == [(10, 6)]
    assert [n.op_type for n in model.graph.node].count("Transpose") == 1
    ids_value = torch.tensor([[1, 2, 3], [4, 5, 9]])
    torch.testing.assert_close(run_onnxruntime(graph, [ids_value])[0], table[ids_value] @ table.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "is_causal, kv_heads, mask, scale",
    [(0, 4, None, None), (1, 4, None, None), (1, 2, None, 0.3), (0, 1, "bool", None), (0, 2, "float", None)],
)
def test_attention_matches_torch_sdpa(is_causal, kv_heads, mask, scale):
    graph = Graph("attention", origin="torch")
    q = graph.add_input("q", (2, 4, 5, 8), torch.float32)
    k = graph.add_input("k", (2, kv_heads, "kv_len", 8), torch.float32)
    v = graph.add_input("v", (2, kv_heads, "kv_len", 8), torch.float32)
    inputs = [q, k, v]
    if mask is not None:
        inputs.append(graph.add_input("mask", (5, "kv_len"), torch.bool if mask == "bool" else torch.float32))
    attrs = {"is_causal": is_causal} | ({"scale": scale} if scale is not None else {})
    graph.outputs = graph.make_node("Attention", inputs, 1, attrs, domain=GRAPHPRESS_DOMAIN).outputs
    infer_shapes(graph)
    assert graph.outputs[0].shape == (2, 4, 5, 8)
    tensors = [torch.randn(2, 4, 5, 8), torch.randn(2, kv_heads, 6, 8), torch.randn(2, kv_heads, 6, 8)]
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(5, 6) > 0.3
        attn_mask[:, 0] = True  # a fully masked row is NaN in both, which says nothing
    elif mask == "float":
        attn_mask = torch.randn(5, 6)
    got = run_onnxruntime(graph, tensors + ([attn_mask] if attn_mask is not None else []))[0]
    want = F.scaled_dot_product_attention(
        *tensors, attn_mask=attn_mask, is_causal=bool(is_causal), scale=scale, enable_gqa=kv_heads != 4
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_registered_emitter_extends_the_backend_and_unknown_macro_is_refused():
    @register_emitter(GRAPHPRESS_DOMAIN, "TestDouble")
    def emit_double(ctx, node):
        two = ctx.constant(torch.tensor(2.0), "two")
        ctx.add_node("Mul", [ctx.name(node.inputs[0]), two], [node.outputs[0].name])

    graph = Graph("ext", origin="torch")
    x = graph.add_input("x", (3,), torch.float32)
    doubled = graph.make_node("TestDouble", [x], domain=GRAPHPRESS_DOMAIN).outputs[0]
    doubled.shape, doubled.dtype = (3,), torch.float32
    graph.outputs = [doubled]
    np.testing.assert_allclose(run_onnxruntime(graph, [np.array([1, 2, 3], np.float32)])[0], [2, 4, 6])

    mystery = graph.make_node("Mystery", [x], domain=GRAPHPRESS_DOMAIN).outputs[0]
    mystery.shape, mystery.dtype = (3,), torch.float32
    graph.outputs = [mystery]
    with pytest.raises(BackendError, match="register_emitter"):
        to_onnx(graph)


def test_infer_shapes_after_pruning_updates_every_value():
    module = _mlp()
    graph = _mlp_graph(module, ("batch", 16))
    hidden = graph.find("Relu")[0].outputs[0]
    assert hidden.shape == ("batch", 32)
    keep = torch.arange(24)
    for value in graph.parameters():  # what a channel-pruning pass does to the first layer's outputs
        if value.param.key in ("0.weight", "0.bias"):
            value.param.data = value.param.data[keep]
        elif value.param.key == "2.weight":
            value.param.data = value.param.data[:, keep]
    infer_shapes(graph)
    assert hidden.shape == ("batch", 24)
    assert module[0].weight.shape == (24, 16)  # the edit reached the user's module
    x = torch.randn(5, 16)
    torch.testing.assert_close(run_onnxruntime(graph, [x])[0], module[2](module[0](x).relu()).detach(), rtol=1e-5, atol=1e-5)


def test_inconsistent_pruning_is_reported():
    module = _mlp()
    graph = _mlp_graph(module, ("batch", 16))
    module[0].weight = torch.nn.Parameter(module[0].weight[:24].detach())  # bias and next layer left at 32
    with pytest.raises(BackendError, match="shape inference failed"):
        infer_shapes(graph)


def test_meta_device_graph_gets_shapes_but_no_file():
    with torch.device("meta"):
        module = _mlp(width=4096, hidden=14336, out=4096)
    graph = _mlp_graph(module, (1, "seq", 4096))
    assert graph.outputs[0].shape == (1, "seq", 4096)
    assert graph.find("Relu")[0].outputs[0].shape == (1, "seq", 14336)
    with pytest.raises(BackendError, match="meta device"):
        to_onnx(graph)


def test_save_onnx_is_atomic_and_converts_opset(tmp_path):
    graph = _mlp_graph(_mlp(), ("batch", 16))
    target = tmp_path / "mlp.onnx"
    target.write_bytes(b"old contents")
    path = save_onnx(graph, target, opset=17)
    assert os.listdir(tmp_path) == ["mlp.onnx"]  # staging folder gone, no data file for a small model
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain == ""] == [17]
    assert [i.name for i in model.graph.input] == ["x"] and model.graph.output[0].name == graph.outputs[0].name


def test_run_onnxruntime_returns_what_it_was_given():
    graph = _mlp_graph(_mlp(), ("batch", 16))
    x = torch.randn(2, 16)
    assert isinstance(run_onnxruntime(graph, [x])[0], torch.Tensor)
    assert isinstance(run_onnxruntime(graph, {"x": x.numpy()})[0], np.ndarray)
    with pytest.raises(BackendError, match="takes 1 inputs"):
        run_onnxruntime(graph, [x, x])


def test_default_scale_is_one_over_sqrt_head_dim():
    graph = Graph("attention", origin="torch")
    q = graph.add_input("q", (1, 2, 3, 16), torch.float32)
    graph.outputs = graph.make_node("Attention", [q, q, q], 1, {"is_causal": 0}, domain=GRAPHPRESS_DOMAIN).outputs
    infer_shapes(graph)
    scales = [onnx.numpy_helper.to_array(t) for t in to_onnx(graph).graph.initializer if t.name.startswith("scale")]
    assert scales and math.isclose(float(scales[0]), 0.25, rel_tol=1e-7)
