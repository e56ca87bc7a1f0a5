"""Ops that torch.export emits for torchvision/timm vision models (found by benchmarks/vision_zoo_sweep.py),
rebuilt in plain torch: each block must trace, match torch in onnxruntime, and prune to a running model whose
ONNX export still matches it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import graphpress
from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.frontends.torch_export import trace
from graphpress.testing.zoo import ZooCase
from graphpress.testing.zoo_checks import onnx_matches

TOLERANCE = 1e-4


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's GRN: the L2 norm of each channel over the image, divided by its mean over channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.gamma = nn.Parameter(torch.rand(1, channels, 1, 1))
        self.out = nn.Conv2d(channels, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        norm = torch.linalg.vector_norm(x, ord=2, dim=(2, 3), keepdim=True)
        inf_norm = x.norm(p=float("inf"), dim=1, keepdim=True)
        p_norm = torch.linalg.vector_norm(x, ord=3, dim=1, keepdim=True)
        x = x + self.gamma * x * (norm / (norm.mean(dim=1, keepdim=True) + 1e-6))
        return self.out(x + inf_norm + F.normalize(x, dim=3) + p_norm + x.abs().norm(p=1, dim=3, keepdim=True))


class RelativePositionBias(nn.Module):
    """Swin's window attention bias: a table looked up with index_select, then written into a mask with
    slice assignment (slice_scatter), unit step and strided."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(9, 2))
        self.register_buffer("index", torch.tensor([0, 4, 8, 3, 1, 5, 2, 6, 7, 0, 4, 8, 3, 1, 5, 2]))
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.table.index_select(0, self.index).transpose(0, 1)  # [2, 16]
        y = self.proj(x)  # [1, 16, dim]
        mask = torch.zeros_like(y)
        mask[:, 2:6] = bias[:1, :, None][:, :4] * y[:, 2:6]
        mask[..., ::2] = mask[..., ::2] + y[..., ::2]
        return self.head(torch.relu(y + mask))


class StandardizedConv(nn.Module):
    """NFNet's ScaledStdConv2d: the weight normalized by its own per-filter statistics with F.batch_norm
    (training=True, no running statistics) before the convolution, in eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(24, 16, 3, 3))
        self.gain = nn.Parameter(torch.rand(24) + 0.5)
        self.head = nn.Conv2d(24, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.batch_norm(self.weight.reshape(1, 24, -1), None, None, weight=self.gain, training=True,
                              momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return self.head(torch.relu(F.conv2d(torch.relu(self.stem(x)), weight, padding=1)))


class UnevenAdaptivePool(nn.Module):
    """AlexNet/VGG at small inputs: adaptive pooling to a grid larger than the feature map, or not dividing it."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc = nn.Linear(16 * grid * grid, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class WindowedAttention(nn.Module):
    """Hiera's mask-unit attention: SDPA on 5-D [batch, heads, windows, tokens, head_dim] tensors."""

    def __init__(self, dim: int = 16, heads: int = 2, windows: int = 4) -> None:
        super().__init__()
        self.heads, self.windows = heads, windows
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, -1, self.windows, 3, self.heads, dim // self.heads).permute(3, 0, 4, 2, 1, 5)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)  # [batch, heads, windows, tokens / windows, head_dim]
        return self.proj(out.transpose(1, 3).reshape(batch, tokens, dim))


CASES = {
    "attention_5d": lambda: (WindowedAttention(), torch.randn(1, 32, 16)),
    "vector_norm": lambda: (GlobalResponseNorm(24), torch.randn(1, 3, 8, 8)),
    "index_select_slice_scatter": lambda: (RelativePositionBias(), torch.randn(1, 16, 16)),
    "batch_norm_batch_statistics": lambda: (StandardizedConv(), torch.randn(1, 3, 8, 8)),
    "adaptive_pool_upsampling": lambda: (UnevenAdaptivePool(6), torch.randn(1, 3, 2, 2)),
    "adaptive_pool_uneven": lambda: (UnevenAdaptivePool(3), torch.randn(1, 3, 10, 10)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_vision_op_matches_torch_in_onnxruntime(name: str) -> None:
    torch.manual_seed(0)
    model, x = CASES[name]()
    model.eval()
    graph = trace(model, (x,))
    got = torch.as_tensor(run_onnxruntime(to_onnx(graph), (x,))[0])
    with torch.no_grad():
        want = model(x)
    assert float((got - want).abs().max() / want.abs().max()) <= TOLERANCE


# A convolution whose weight is computed (standardized) keeps its channels (the coupling follows parameters
# read directly), and the 5-D attention's heads sit behind a window axis the coupling does not factor, so
# those blocks only have to stay runnable and exportable.
MIN_RATIO = {"batch_norm_batch_statistics": 0.0, "attention_5d": 0.0}


@pytest.mark.parametrize("name", list(CASES))
def test_vision_op_block_prunes_and_exports(name: str) -> None:
    torch.manual_seed(0)
    model, x = CASES[name]()
    model.eval()
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3,round_to=1}", example_inputs=(x,),
                                         return_report=True)
    assert report.records[-1].stats["achieved_ratio"] >= MIN_RATIO.get(name, 0.1)
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape
    assert onnx_matches(pruned, ZooCase(name, pruned, (x,))) <= TOLERANCE


@pytest.mark.parametrize("options", [
    dict(output_size=(8, 6), kernel_size=(2, 3), stride=(2, 3)),  # windows that tile the image (MobileViT-v2)
    dict(output_size=(7, 9), kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),  # overlaps
])
def test_fold_matches_torch(options: dict) -> None:
    class Fold(torch.nn.Module):
        def forward(self, columns: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.fold(columns, **options)

    kh, kw = options["kernel_size"]
    ones = torch.nn.functional.unfold(torch.ones(1, 1, *options["output_size"]), **{k: v for k, v in options.items()
                                                                                   if k != "output_size"})
    columns = torch.randn(2, 4 * kh * kw, ones.shape[-1], generator=torch.Generator().manual_seed(0))
    graph = trace(Fold(), (columns,))
    assert not graph.find("ScatterND")
    got = torch.as_tensor(run_onnxruntime(to_onnx(graph), (columns,))[0])
    assert torch.allclose(got, Fold()(columns), atol=1e-5)
