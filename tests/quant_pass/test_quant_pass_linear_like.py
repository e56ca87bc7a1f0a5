"""`quantize` on modules that compute a linear map without being ``nn.Linear``: GPT-2's ``Conv1D`` (weight stored
``[in, out]``, ``addmm`` on the flattened input) is adopted as an ``nn.Linear`` and quantized; a module that looks
alike but computes something else is left alone."""

import copy

import onnx
import torch
from torch import nn

import graphpress
from graphpress.backends.onnx import run_onnxruntime
from graphpress.quantization import QuantizedLinear
from graphpress.testing.zoo import tiny_case
from graphpress.testing.zoo_checks import optimize_kwargs


class ScaledProjection(nn.Module):
    """A weight and a bias like Conv1D's, but the forward also squares the result: not a linear map."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 8))
        self.bias = nn.Parameter(torch.randn(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, 16), self.weight).reshape(*x.shape[:-1], 8) ** 2


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_gpt2_conv1d_projections_are_quantized() -> None:
    case = tiny_case("gpt2")
    original = copy.deepcopy(case.model)
    quantized, report = graphpress.optimize(case.model, "quantize{bits=8,group=0}", return_report=True,
                                            **optimize_kwargs(case))
    assert report.records[-1].stats["layers"] == 8  # c_attn, c_proj, c_fc, mlp.c_proj in both blocks
    assert sum(isinstance(m, QuantizedLinear) for m in quantized.modules()) == 8
    ids = case.inputs["input_ids"]
    assert _rel(quantized(ids, use_cache=False).logits, original(ids, use_cache=False).logits) < 2e-2
    assert type(case.model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"  # the user's model untouched
    assert torch.equal(case.model.transformer.h[0].attn.c_attn.weight, original.transformer.h[0].attn.c_attn.weight)


def test_gpt2_quantized_exports_to_onnx(tmp_path) -> None:
    case = tiny_case("gpt2")
    path = tmp_path / "gpt2_w8.onnx"
    quantized = graphpress.optimize(case.model, "quantize{bits=8,group=0}", **optimize_kwargs(case))
    graphpress.export_onnx(quantized, path, **optimize_kwargs(case))
    ids = case.inputs["input_ids"]
    got = run_onnxruntime(onnx.load(str(path)), {"input_ids": ids})[0]
    assert _rel(torch.as_tensor(got), quantized(ids, use_cache=False).logits) < 1e-3


def test_a_module_that_is_not_linear_stays_float() -> None:
    model = nn.Sequential(ScaledProjection(), nn.Linear(8, 4))
    x = torch.randn(2, 3, 16)
    quantized, report = graphpress.optimize(model, "quantize{bits=8,group=0}", example_inputs=(x,),
                                            return_report=True)
    assert report.records[-1].stats["layers"] == 1  # only the nn.Linear
    assert type(quantized[0]) is ScaledProjection
