"""The `quantize` pass end to end: torch model -> QuantizedLinear + QLinear IR -> ONNX MatMulNBits / QDQ."""

import pytest
import torch

import graphpress
from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.errors import PassError
from graphpress.frontends.torch_export import trace
from graphpress.quantization import QuantizedLinear
from graphpress.testing.zoo import tiny_case

KW = {"use_cache": False}


@pytest.fixture(scope="module")
def llama():
    return tiny_case("llama")


@pytest.mark.parametrize(
    "pipeline, onnx_op",
    [
        ("quantize{bits=4,group=32}", "MatMulNBits"),
        ("quantize{bits=3,group=32,method=hqq}", "MatMulNBits"),
        ("quantize{bits=4,group=0}", "MatMulNBits"),
        ("quantize{bits=4,group=32,sym=true}", "MatMulNBits"),
        ("quantize{bits=8,group=0,act_bits=8,integer_zero=false}", "MatMulNBits"),
        ("quantize{bits=8,group=0,act_bits=8}", "DequantizeLinear"),
        ("quantize{bits=4,group=32,integer_zero=false}", "MatMulNBits"),
        ("quantize{bits=8,group=0,sym=true,act_bits=8}", "DequantizeLinear"),
    ],
)
def test_quantized_torch_model_exports_and_matches(llama, pipeline, onnx_op):
    ids = llama.inputs["input_ids"]
    quantized, report = graphpress.optimize(llama.model, pipeline, example_inputs=(ids,), example_kwargs=KW,
                                            return_report=True)
    assert type(quantized) is type(llama.model)
    assert isinstance(quantized.model.layers[0].mlp.down_proj, QuantizedLinear)
    assert isinstance(llama.model.model.layers[0].mlp.down_proj, torch.nn.Linear)  # the input is untouched
    assert report.records[0].stats["layers"] == 14
    with torch.no_grad():
        expected = quantized(ids, **KW).logits
    graph = trace(quantized, (ids,), example_kwargs=KW)
    assert len(graph.find("QLinear")) == 14
    proto = to_onnx(graph)
    assert onnx_op in {n.op_type for n in proto.graph.node}
    actual = torch.as_tensor(run_onnxruntime(proto, [ids])[0])
    # onnxruntime's optimizer runs a QDQ model on its own int8 kernels (activations quantized its way),
    # so only the weight-only path can match to float rounding.
    tolerance = 2e-2 if onnx_op == "DequantizeLinear" else 1e-4
    assert ((actual - expected).abs().max() / expected.abs().max()).item() <= tolerance
    _assert_zero_points_are_prepackable(proto)


def _assert_zero_points_are_prepackable(proto) -> None:
    """onnxruntime prepacks MatMulNBits only with uint8 zero points; float ones hit a slow dequantizing path."""
    from onnx import TensorProto

    types = {t.name: t.data_type for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "MatMulNBits" and len(node.input) > 3 and node.input[3]:
            assert types[node.input[3]] == TensorProto.UINT8, f"{node.name}: float zero points"


def test_onnx_model_is_quantized_to_matmulnbits():
    case = tiny_case("llama")
    ids = case.inputs["input_ids"]
    proto = to_onnx(trace(case.model, (ids,), example_kwargs=KW))
    quantized = graphpress.optimize(proto, "quantize{bits=4,group=32}", example_inputs=(ids,))
    assert sum(n.op_type == "MatMulNBits" for n in quantized.graph.node) == 14
    dense, small = (torch.as_tensor(run_onnxruntime(m, [ids])[0]) for m in (proto, quantized))
    assert ((small - dense).abs().max() / dense.abs().max()).item() < 0.5
    assert quantized.ByteSize() < 0.6 * proto.ByteSize()


def test_calibrated_methods_are_refused_before_work(llama):
    with pytest.raises(PassError, match="needs calibration"):
        graphpress.optimize(llama.model, "quantize{method=gptq}", example_inputs=(llama.inputs["input_ids"],),
                            example_kwargs=KW)
    proto = to_onnx(trace(llama.model, (llama.inputs["input_ids"],), example_kwargs=KW))
    with pytest.raises(PassError, match="use method=rtn or method=hqq"):
        graphpress.optimize(proto, "quantize{method=awq}")


def test_lower_triton_on_cpu_is_a_reported_no_op(llama):
    ids = llama.inputs["input_ids"]
    out, report = graphpress.optimize(llama.model, "quantize{bits=4,group=32},lower-triton",
                                      example_inputs=(ids,), example_kwargs=KW, return_report=True)
    record = report.records[-1]
    assert record.name == "lower-triton" and not record.modified
    assert "cpu" in record.stats["reason"]
    assert isinstance(out.model.layers[0].mlp.down_proj, QuantizedLinear)


def test_int8_compute_marks_matmulnbits_for_onnxruntimes_int8_kernels(llama):
    ids = llama.inputs["input_ids"]
    quantized = graphpress.optimize(llama.model, "quantize{bits=4,group=32}", example_inputs=(ids,), example_kwargs=KW)
    graph = trace(quantized, (ids,), example_kwargs=KW)
    exact, fast = to_onnx(graph), to_onnx(graph, int8_compute=True)
    levels = lambda proto: {a.i for n in proto.graph.node if n.op_type == "MatMulNBits"  # noqa: E731
                            for a in n.attribute if a.name == "accuracy_level"}
    assert levels(exact) == {0} and levels(fast) == {4}
    with torch.no_grad():
        expected = quantized(ids, **KW).logits
    actual = torch.as_tensor(run_onnxruntime(fast, [ids])[0])
    assert ((actual - expected).abs().max() / expected.abs().max()).item() <= 5e-2  # int8 activations: close
