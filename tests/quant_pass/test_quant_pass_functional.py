"""`quantize` on linears whose parameters the model reads itself: ``F.linear(x, self.proj.weight, self.proj.bias)``
from a parent module (torchvision's Swin attention) is quantized like a called linear; a weight read any other way
(transposed, by a non-Linear op) keeps its linear in float, named in one warning."""

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graphpress
from graphpress.api import _context, optimize_graph
from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.backends.torch_module import finalize_module
from graphpress.frontends.torch_export import trace
from graphpress.quantization import QuantizedLinear

DIM = 32


class FunctionalAttention(nn.Module):
    """Reads its projections' parameters and calls ``F.linear`` itself; the qkv bias is computed (Swin-V2 zeroes
    the key part of a copy), the output projection's is the module's own."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.register_buffer("bias_mask", torch.cat([torch.ones(DIM), torch.zeros(DIM), torch.ones(DIM)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.qkv.weight, self.qkv.bias * self.bias_mask).chunk(3, dim=-1)
        attention = torch.softmax(q @ k.transpose(-2, -1) / DIM ** 0.5, dim=-1)
        return F.linear(attention @ v, self.proj.weight, self.proj.bias)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = FunctionalAttention()
        self.fc = nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attn(x)
        return h + self.fc(h) + F.linear(h, self.fc.weight)  # fc both called and read functionally


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(2))
        self.head = nn.Linear(DIM, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class OtherReads(nn.Module):
    """Linears whose weight is also read other than as a linear product's: they must stay float."""

    def __init__(self) -> None:
        super().__init__()
        self.transposed = nn.Linear(DIM, DIM)  # read as [in, out]: x @ weight
        self.scaled = nn.Linear(DIM, DIM)  # called, and its weight read by a reduction
        self.plain = nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.transposed.weight
        h = self.scaled(h) * self.scaled.weight.abs().mean()
        return self.plain(h)


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture()
def net() -> FunctionalNet:
    torch.manual_seed(0)
    return FunctionalNet().eval()


@pytest.fixture()
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 8, DIM)


def test_functionally_read_linears_are_quantized(net, x):
    quantized, report = graphpress.optimize(net, "quantize{bits=8,group=0}", example_inputs=(x,), return_report=True)
    names = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    assert all(isinstance(quantized.get_submodule(name), QuantizedLinear) for name in names)
    assert report.records[0].stats["layers"] == 9  # qkv, proj, fc called, fc read: 4 per block, and the head
    assert report.records[0].stats["kept_float"] == 0
    with torch.no_grad():
        assert _relative(quantized(x), net(x)) < 1e-2  # the returned module runs eagerly, close to float


def test_weight_property_gives_the_dequantized_weight(net, x):
    quantized = graphpress.optimize(net, "quantize{bits=8,group=0}", example_inputs=(x,))
    qkv, original = quantized.blocks[0].attn.qkv, net.blocks[0].attn.qkv
    assert (qkv.in_features, qkv.out_features) == (DIM, 3 * DIM)
    assert qkv.weight.shape == original.weight.shape and qkv.weight.dtype == original.weight.dtype
    assert torch.equal(qkv.weight, qkv.dequantized_weight())
    assert (qkv.weight - original.weight).abs().max() <= original.weight.abs().amax(dim=1).max() / 127
    assert torch.equal(qkv.bias, original.bias)


def test_ignore_globs_apply_to_the_owning_linear(net, x):
    quantized, report = graphpress.optimize(net, "quantize{bits=8,group=0,ignore=*.attn.proj}", example_inputs=(x,),
                                            return_report=True)
    assert type(quantized.blocks[1].attn.proj) is nn.Linear
    assert isinstance(quantized.blocks[1].attn.qkv, QuantizedLinear)
    assert report.records[0].stats["layers"] == 7


@pytest.mark.parametrize("pipeline, onnx_op", [("quantize{bits=4,group=16}", "MatMulNBits"),
                                               ("quantize{bits=8,group=0,act_bits=8}", "DequantizeLinear")])
def test_quantized_graph_and_retraced_module_export_to_onnx(net, x, pipeline, onnx_op):
    graph = trace(copy.deepcopy(net), (x,))
    optimize_graph(graph, pipeline, _context((x,), None, None, None, True, None))
    assert len(graph.find("QLinear")) == 9 and not graph.find("Linear")
    quantized = finalize_module(graph)
    with torch.no_grad():
        expected = quantized(x)
    # onnxruntime's own int8 kernels run the QDQ layers (see test_quant_pass_onnx.py): close, not exact.
    tolerance = 2e-2 if onnx_op == "DequantizeLinear" else 1e-4
    retraced = trace(quantized, (x,))  # F.linear on a QuantizedLinear's weight traces back to a QLinear
    assert len(retraced.find("QLinear")) == 9 and not retraced.find("Linear")
    for source in (graph, retraced):
        proto = to_onnx(source)
        assert onnx_op in {n.op_type for n in proto.graph.node}
        assert _relative(torch.as_tensor(run_onnxruntime(proto, [x])[0]), expected) <= tolerance


def test_weights_read_other_ways_stay_float_and_are_named(x, caplog):
    torch.manual_seed(0)
    model = OtherReads().eval()
    with caplog.at_level(logging.WARNING, logger="graphpress"):
        quantized, report = graphpress.optimize(model, "quantize{bits=8,group=0}", example_inputs=(x,),
                                                return_report=True)
    assert type(quantized.transposed) is nn.Linear and type(quantized.scaled) is nn.Linear
    assert isinstance(quantized.plain, QuantizedLinear)
    assert report.records[0].stats["kept_float"] == 2
    warnings = [r.getMessage() for r in caplog.records if "stay in float" in r.getMessage()]
    assert len(warnings) == 1
    assert "transposed (read transposed" in warnings[0] and "scaled (read by" in warnings[0]
    with torch.no_grad():
        assert _relative(quantized(x), model(x)) < 1e-2


def test_ignored_linears_are_not_named_as_kept_float(x, caplog):
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="graphpress"):
        graphpress.optimize(OtherReads().eval(), "quantize{bits=8,group=0,ignore=transposed|scaled}",
                            example_inputs=(x,))
    assert not any("stay in float" in r.getMessage() for r in caplog.records)


def test_calibrated_methods_fall_back_to_rtn_for_linears_never_called(net, x):
    # qkv and proj never run their own forward, so no input statistics exist for them (nor for the head,
    # outside the blocks): they are quantized with RTN and listed, the called fc layers with GPTQ.
    quantized, report = graphpress.optimize(net, "quantize{bits=8,group=0,method=gptq}", example_inputs=(x,),
                                            calibration=[{"x": x}], return_report=True)
    assert report.records[0].stats["layers"] == 9 and report.records[0].stats["fallback_rtn"] == 5
    with torch.no_grad():
        assert _relative(quantized(x), net(x)) < 1e-2
