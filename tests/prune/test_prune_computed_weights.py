"""Convolutions whose weight is computed from a stored one (BiT's weight standardisation, Mamba's depthwise
kernel reshaped from ``[C, k]``) prune like ordinary ones, and a group norm that loses whole groups gets its
``num_groups`` from the graph."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from graphpress.api import _context, optimize_graph
from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.backends.torch_module import finalize_module
from graphpress.frontends.torch_export import trace


class StandardizedConv(nn.Conv2d):
    """Weight standardisation written the way BiT and timm's StdConv2d write it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                              momentum=0.0, eps=1e-8).reshape_as(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding)


class CausalDepthwise(nn.Module):
    """A depthwise kernel kept as ``[C, k]`` and reshaped for the convolution (Mamba's reference conv)."""

    def __init__(self, channels: int, width: int = 3) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(channels, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.kernel.unsqueeze(1), padding=self.kernel.shape[1] - 1,
                        groups=self.kernel.shape[0])[..., :x.shape[-1]]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = StandardizedConv(3, 16, 3, padding=1)
        self.norm = nn.GroupNorm(16, 16)  # one channel per group: pruning removes whole groups
        self.body = StandardizedConv(16, 32, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, 32)  # four per group
        self.mix = CausalDepthwise(32)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.stem(x)))
        x = F.relu(self.norm2(self.body(x))).flatten(2)
        return self.head(self.mix(x).mean(-1))


def test_computed_kernels_and_group_norms_prune_consistently() -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 3, 8, 8)
    graph = trace(copy.deepcopy(model), (x,))
    report = optimize_graph(graph, "prune-channels{ratio=0.3,recover=false}",
                            _context((x,), None, None, None, True, None))
    stats = report.records[-1].stats
    assert stats["uncovered_ops"] == 0 and 0.2 <= stats["achieved_ratio"] <= 0.4
    pruned = finalize_module(graph)
    assert pruned.stem.weight.shape[0] < 16 and pruned.mix.kernel.shape[0] < 32
    assert pruned.norm.num_groups == pruned.norm.num_channels  # still one channel per group
    assert pruned.norm2.num_channels % pruned.norm2.num_groups == 0
    with torch.no_grad():
        want = pruned(x)
    got = torch.as_tensor(run_onnxruntime(to_onnx(graph), (x,))[0])  # the pruned graph computes the same
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
