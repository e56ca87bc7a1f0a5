"""``quantize`` covers linear layers; when convolutions hold most of the weights it says they stay in float."""

from __future__ import annotations

import logging

import torch
from torch import nn

import graphpress
from graphpress.testing import TinyResNet


def test_a_cnn_is_told_its_convolutions_stay_float(caplog) -> None:
    torch.manual_seed(0)
    model = TinyResNet().eval()
    with caplog.at_level(logging.WARNING, logger="graphpress"):
        _, report = graphpress.optimize(model, "quantize{bits=8,group=0}", example_inputs=(torch.randn(1, 3, 32, 32),),
                                        return_report=True)
    stats = report.records[-1].stats
    convs = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert stats["float_conv_params"] == convs
    assert any("convolution(s) stay in float" in r.getMessage() and "quantize covers linear layers" in r.getMessage()
               for r in caplog.records)


def test_a_transformer_with_a_patch_convolution_is_not_warned(caplog) -> None:
    class PatchNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 16, 4, stride=4)
            self.mlp = nn.Sequential(nn.Linear(16, 256), nn.GELU(), nn.Linear(256, 16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(self.patch(x).flatten(2).transpose(1, 2))

    with caplog.at_level(logging.WARNING, logger="graphpress"):
        _, report = graphpress.optimize(PatchNet().eval(), "quantize{bits=8,group=0}",
                                        example_inputs=(torch.randn(1, 3, 16, 16),), return_report=True)
    assert report.records[-1].stats["layers"] == 2
    assert not any("convolution" in r.getMessage() for r in caplog.records)
