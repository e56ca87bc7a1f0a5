"""Module code the torch frontend and backend meet in Hugging Face architectures beyond the core zoo: a linear
written as ``x @ self.weight.T`` (Falcon's FalconLinear) and a layer norm without weights (OLMo's)."""

from __future__ import annotations

import sys

import torch
from torch import nn

import graphpress
from graphpress.frontends.torch_export import trace

sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # the pass manager deep-copies graphs


class TransposedLinear(nn.Linear):
    """Falcon's FalconLinear: the same product, written with an explicit transpose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight.T
        return out if self.bias is None else out + self.bias


class WeightlessNormBlock(nn.Module):
    """A residual block whose norm has no affine parameters: its width lives only in ``normalized_shape``."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.up, self.norm, self.mix, self.out = nn.Linear(16, 64), norm, nn.Linear(64, 64), nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        return self.out(h + self.mix(self.norm(h)))


class OlmoStyleNorm(nn.Module):
    """OLMo's LayerNorm: a hand-written module that keeps torch's ``normalized_shape`` and no weights."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.normalized_shape = (width,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, self.normalized_shape, None, None, eps=1e-5)


def test_product_by_transposed_weight_is_a_linear() -> None:
    model = nn.Sequential(TransposedLinear(16, 32, bias=False), nn.ReLU(), TransposedLinear(32, 8)).eval()
    graph = trace(model, (torch.randn(2, 5, 16),))
    linears = graph.find("Linear")
    assert [n.scope for n in linears] == ["0", "2"]
    assert linears[0].inputs[1].param.key == "0.weight"  # the stored [out, in] parameter, no transposed view
    assert not graph.find("Transpose") and not graph.find("MatMul")


def test_weightless_layer_norms_follow_the_pruned_width() -> None:
    x = torch.randn(2, 16)
    for norm in (nn.LayerNorm(64, elementwise_affine=False), OlmoStyleNorm(64)):
        model = WeightlessNormBlock(norm).eval()
        pruned = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=(x,))
        width = pruned.up.out_features
        assert width < 64 and tuple(pruned.norm.normalized_shape) == (width,)
        assert pruned(x).shape == (2, 8)
