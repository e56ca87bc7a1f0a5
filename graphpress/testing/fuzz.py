"""Hypothesis strategies that generate small networks (and the pipelines to run on them) for fuzzing.

A generated network is a plain ``nn.Module`` built from a *spec*: a tuple of block descriptions that
hypothesis draws and shrinks. Two families cover the structural patterns the coupling analysis must get
right: image networks (convolutions, grouped convolutions, BatchNorm, residual adds, channel concats,
channel splits, a flatten/reshape into a classifier head) and sequence networks (MLPs with residuals,
attention blocks with grouped-query heads viewed through reshapes, a split-and-concat mixer). Keeping
the spec as data (not the module) lets a failing example be printed, stored and rebuilt exactly.

Weights are initialised from a seed in the spec, so a case is reproducible without hypothesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

__all__ = ["NetSpec", "FuzzCase", "build_network", "net_specs", "fuzz_cases", "pipelines"]


@dataclass(frozen=True)
class NetSpec:
    """What to build: ``family`` "image" or "sequence", its ``width``, the ``blocks`` and a weight seed."""

    family: str
    width: int
    blocks: tuple[tuple, ...]
    seed: int = 0


@dataclass
class FuzzCase:
    """A built network with the inputs to trace it and the spec that rebuilds it."""

    spec: NetSpec
    model: nn.Module
    example_inputs: tuple


# ---- image blocks (tensors are [batch, channels, height, width]) ---------------------------------------


class ConvResidual(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input: the residual add couples both convs' output channels."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ConvConcat(nn.Module):
    """Two branches concatenated on channels, then a 1x1 conv back to the input width."""

    def __init__(self, channels: int, branch: int):
        super().__init__()
        self.left = nn.Conv2d(channels, branch, 1)
        self.right = nn.Conv2d(channels, branch, 3, padding=1)
        self.merge = nn.Conv2d(2 * branch, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([F.relu(self.left(x)), F.relu(self.right(x))], dim=1))


class ConvSplit(nn.Module):
    """Chunk channels in two, transform each half differently, concatenate (an index-range shift).

    ``chunk`` (not a size held in a Python attribute) keeps the forward valid after pruning: sizes kept in
    Python ints are not model state graphpress can edit, and such a model is refused by the numeric check.
    """

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.first = nn.Conv2d(half, half, 3, padding=1)
        self.second = nn.Conv2d(half, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([F.relu(self.first(a)), self.second(b)], dim=1)


class GroupedConv(nn.Module):
    """A grouped conv (or depthwise when groups == channels) between two pointwise convs."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.expand = nn.Conv2d(channels, channels, 1)
        self.grouped = nn.Conv2d(channels, channels, 3, padding=1, groups=groups)
        self.bn = nn.BatchNorm2d(channels)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.relu(self.bn(self.grouped(F.relu(self.expand(x))))))


# ---- sequence blocks (tensors are [batch, tokens, width]) -----------------------------------------------


class MLPResidual(nn.Module):
    """LayerNorm, up-projection, GELU, down-projection, residual add."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.norm(x))))


class GQAttention(nn.Module):
    """Self-attention with ``kv_heads`` key/value heads each serving ``heads // kv_heads`` query heads.

    Head counts live in the Hugging Face attribute names (``num_heads``, ``num_key_value_heads``,
    ``head_dim``) that graphpress rewrites after pruning heads, as it does for transformers models.
    """

    def __init__(self, width: int, heads: int, kv_heads: int, head_dim: int, causal: bool):
        super().__init__()
        self.num_heads, self.num_key_value_heads, self.head_dim, self.causal = heads, kv_heads, head_dim, causal
        self.norm = nn.LayerNorm(width)
        self.q_proj = nn.Linear(width, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        h = self.norm(x)
        q = self.q_proj(h).view(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(batch, tokens, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(batch, tokens, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        repeat = self.num_heads // self.num_key_value_heads
        k = k.repeat_interleave(repeat, dim=1)
        v = v.repeat_interleave(repeat, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return x + self.o_proj(out.transpose(1, 2).reshape(batch, tokens, self.num_heads * self.head_dim))


class SplitMixer(nn.Module):
    """Chunk the width into two halves, project each, concatenate: coupled index ranges on Linears."""

    def __init__(self, width: int):
        super().__init__()
        self.first = nn.Linear(width // 2, width // 2)
        self.second = nn.Linear(width // 2, width // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)
        return torch.cat([F.silu(self.first(a)), self.second(b)], dim=-1)


def _image_block(block: tuple, width: int) -> nn.Module:
    kind, *args = block
    if kind == "residual":
        return ConvResidual(width, *args)
    if kind == "concat":
        return ConvConcat(width, *args)
    if kind == "split":
        return ConvSplit(width)
    if kind == "grouped":
        return GroupedConv(width, *args)
    raise ValueError(f"unknown image block {kind!r}")


def _sequence_block(block: tuple, width: int) -> nn.Module:
    kind, *args = block
    if kind == "mlp":
        return MLPResidual(width, *args)
    if kind == "attention":
        return GQAttention(width, *args)
    if kind == "split":
        return SplitMixer(width)
    raise ValueError(f"unknown sequence block {kind!r}")


class ImageNet(nn.Module):
    """stem conv -> blocks -> pooled to 2x2 -> flatten (a reshape the head's input channels follow) -> head."""

    def __init__(self, spec: NetSpec, in_channels: int = 3, classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, spec.width, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(spec.width)
        self.blocks = nn.Sequential(*(_image_block(b, spec.width) for b in spec.blocks))
        self.head = nn.Linear(spec.width * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.stem_bn(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 2)
        return self.head(x.reshape(x.shape[0], -1))


class SequenceNet(nn.Module):
    """input projection -> blocks -> final norm -> output projection."""

    def __init__(self, spec: NetSpec, features: int = 12, outputs: int = 7):
        super().__init__()
        self.embed = nn.Linear(features, spec.width)
        self.blocks = nn.Sequential(*(_sequence_block(b, spec.width) for b in spec.blocks))
        self.norm = nn.LayerNorm(spec.width)
        self.head = nn.Linear(spec.width, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.embed(x))))


def _randomize_norm_statistics(model: nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorms non-trivial statistics and affine terms, so folding them is actually tested."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(channels, generator=generator) * 0.1)


def build_network(spec: NetSpec) -> FuzzCase:
    """Build the module a spec describes (eval mode, seeded weights) and its example inputs."""
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    if spec.family == "image":
        model: nn.Module = ImageNet(spec)
        inputs = (torch.randn(2, 3, 8, 8, generator=generator),)
    elif spec.family == "sequence":
        model = SequenceNet(spec)
        inputs = (torch.randn(2, 6, 12, generator=generator),)
    else:
        raise ValueError(f"unknown network family {spec.family!r}")
    with torch.no_grad():
        _randomize_norm_statistics(model, generator)
    return FuzzCase(spec, model.eval(), inputs)


def _image_blocks(width: int) -> st.SearchStrategy:
    divisors = [g for g in (1, 2, 4, width) if width % g == 0]
    return st.one_of(
        st.tuples(st.just("residual"), st.sampled_from(divisors)),
        st.tuples(st.just("concat"), st.sampled_from([4, 8, 12])),
        st.just(("split",)),
        st.tuples(st.just("grouped"), st.sampled_from(divisors)),
    )


@st.composite
def _attention_block(draw: Any) -> tuple:
    kv_heads = draw(st.sampled_from([1, 2]))
    heads = kv_heads * draw(st.sampled_from([1, 2, 3]))
    head_dim = draw(st.sampled_from([4, 8]))
    return ("attention", heads, kv_heads, head_dim, draw(st.booleans()))


def _sequence_blocks() -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("mlp"), st.sampled_from([16, 24, 32, 48])),
        _attention_block(),
        st.just(("split",)),
    )


@st.composite
def net_specs(draw: Any, max_blocks: int = 3) -> NetSpec:
    """A random network spec: family, width, 1..max_blocks blocks, weight seed."""
    family = draw(st.sampled_from(["image", "sequence"]))
    width = draw(st.sampled_from([8, 12, 16, 24]))
    blocks_strategy = _image_blocks(width) if family == "image" else _sequence_blocks()
    blocks = draw(st.lists(blocks_strategy, min_size=1, max_size=max_blocks))
    return NetSpec(family, width, tuple(blocks), draw(st.integers(0, 2**16)))


def fuzz_cases(max_blocks: int = 3) -> st.SearchStrategy:
    """Built networks (:class:`FuzzCase`) from :func:`net_specs`."""
    return net_specs(max_blocks).map(build_network)


@st.composite
def pipelines(draw: Any) -> str:
    """A pipeline string: optional folding, then pruning / quantization / sparsity at generated settings."""
    steps = []
    if draw(st.booleans()):
        steps.append("fold-bn")
    compress = draw(st.sampled_from(["prune-channels", "prune-heads", "quantize", "sparsify", "none"]))
    ratio = draw(st.sampled_from([0.1, 0.25, 0.4, 0.6]))
    if compress in ("prune-channels", "prune-heads"):
        importance = draw(st.sampled_from(["l1", "l2", "random"]))
        scope = draw(st.sampled_from(["local", "global"]))
        steps.append(f"{compress}{{ratio={ratio},importance={importance},scope={scope},round_to=1}}")
    elif compress == "quantize":
        bits = draw(st.sampled_from([4, 8]))
        group = draw(st.sampled_from([0, 16, 32]))  # MatMulNBits block sizes, so ONNX keeps them packed
        steps.append(f"quantize{{bits={bits},group={group},method=rtn,ignore=none}}")
    elif compress == "sparsify":
        steps.append(f"sparsify{{ratio={ratio},method=magnitude,ignore=none}}")
    if draw(st.booleans()):
        steps.append("fold-constants")
    steps.append("dce")
    return ",".join(steps)

