"""Which linears quantization swaps: nn.Linear subclasses that still compute a linear (Falcon's FalconLinear)
but not ones that add to it, never the modules a model class keeps in float (T5's ``wo``), and in the
quantize pass only modules the traced graph computes as a Linear."""

from __future__ import annotations

import sys

import torch
from torch import nn

import graphpress
from graphpress.quantization import QuantizedLinear, select_linears

sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # the pass manager deep-copies graphs


class TransposedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


class ScaledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)  # not a plain linear: quantizing it would drop the scale


class KeepsWoInFloat(nn.Module):
    """T5's feed-forward pattern: forward reads ``wo.weight.dtype``; the class declares wo must stay float."""

    _keep_in_fp32_modules = ["wo"]

    def __init__(self) -> None:
        super().__init__()
        self.wi, self.wo, self.odd = TransposedLinear(32, 64), nn.Linear(64, 32), ScaledLinear(32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.wi(x)).to(self.wo.weight.dtype)
        return self.odd(self.wo(h))


def test_selection_takes_plain_subclasses_and_skips_kept_float_modules() -> None:
    assert list(select_linears(KeepsWoInFloat())) == ["wi"]


def test_quantize_pass_swaps_what_the_graph_calls_a_linear() -> None:
    torch.manual_seed(0)
    model, x = KeepsWoInFloat().eval(), torch.randn(2, 4, 32)
    quantized, report = graphpress.optimize(model, "quantize{bits=8,group=0}", example_inputs=(x,),
                                            return_report=True)
    assert isinstance(quantized.wi, QuantizedLinear) and type(quantized.wo) is nn.Linear
    assert type(quantized.odd) is ScaledLinear and report.records[-1].stats["layers"] == 1
    want = model(x)
    assert ((quantized(x) - want).abs().max() / want.abs().max()).item() < 2e-2
