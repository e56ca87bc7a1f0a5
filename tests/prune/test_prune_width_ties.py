"""``recover=`` with forward code that reads the residual width as the heads' width (timm's CaiT, XCiT, BEiT:
``reshape(B, N, 3, num_heads, C // num_heads)`` and ``reshape(B, N, C)``, ``C`` from the block's input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graphpress
from graphpress.analysis.coupling import analyze_coupling
from graphpress.passes.prune.width_ties import WidthTie, propose_ties, tied_keep


class ResidualWidthAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.qkv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.project(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        attention = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = ResidualWidthAttention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(torch.relu(self.fc1(self.norm2(x))))


class Net(nn.Module):
    def __init__(self, dim: int = 80, heads: int = 5):
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(3)))
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)).mean(1))


class MergingNet(Net):
    """Swin's patch merging after the blocks: four neighbouring tokens concatenated along the channels, so each
    residual channel owns four inputs of the merging linear."""

    def __init__(self, dim: int = 80, heads: int = 5):
        super().__init__(dim, heads)
        self.head = nn.Linear(4 * dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(x))
        b, n, c = x.shape
        return self.head(x.reshape(b, n // 4, 4 * c)).mean(1)


class ZeroedKeyBiasAttention(ResidualWidthAttention):
    """Swin-V2 (torchvision): the k third of a copy of the q/k/v bias is zeroed in place in every forward."""

    def project(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.qkv.bias.clone()
        bias[bias.numel() // 3:2 * bias.numel() // 3].zero_()
        return F.linear(x, self.qkv.weight, bias)


def _pruned(dim: int, heads: int, scope: str) -> tuple[nn.Module, dict, torch.Tensor]:
    torch.manual_seed(0)
    model, x = Net(dim, heads).eval(), torch.randn(2, 7, 16)
    pruned, report = graphpress.optimize(model, f"prune-channels{{ratio=0.3,scope={scope}}}", example_inputs=(x,),
                                         return_report=True)
    return pruned, report.records[-1].stats, x


def _matches_its_onnx_export(model: nn.Module, x: torch.Tensor, tmp_path) -> bool:
    import onnx

    from graphpress.backends.onnx import run_onnxruntime

    path = str(tmp_path / "pruned.onnx")
    graphpress.export_onnx(model, path, (x,))
    with torch.no_grad():
        return torch.allclose(model(x), torch.as_tensor(run_onnxruntime(onnx.load(path), [x])[0]), atol=1e-5)


@pytest.mark.parametrize("dim,heads", [(80, 5), (96, 12)])
def test_residual_and_heads_shrink_together_instead_of_freezing(dim, heads, tmp_path) -> None:
    pruned, stats, x = _pruned(dim, heads, "global")
    assert "frozen" not in stats and len(stats["width_ties"]) == 1 and 0.27 <= stats["achieved_ratio"] <= 0.33
    width = pruned.embed.out_features
    assert width < dim
    for block in pruned.blocks:
        head_dim = dim // heads
        assert block.attn.num_heads * head_dim == width == block.attn.proj.in_features  # equal widths, whole heads
        assert block.attn.qkv.out_features == 3 * width
    assert _matches_its_onnx_export(pruned, x, tmp_path)


def test_heads_whose_key_bias_is_zeroed_in_place_are_tied_too(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = Net(80, 5).eval(), torch.randn(2, 7, 16)
    for block in model.blocks:
        block.attn = ZeroedKeyBiasAttention(80, 5)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3,scope=global}", example_inputs=(x,),
                                         return_report=True)
    stats = report.records[-1].stats
    assert "frozen" not in stats and len(stats["width_ties"]) == 1
    for block in pruned.blocks:
        assert block.attn.num_heads == 4 and block.attn.qkv.out_features == 3 * pruned.embed.out_features == 192
    assert _matches_its_onnx_export(pruned, x, tmp_path)


def test_a_residual_that_patch_merging_concatenates_is_tied_too(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = MergingNet(80, 5).eval(), torch.randn(2, 8, 16)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3,scope=global}", example_inputs=(x,),
                                         return_report=True)
    stats = report.records[-1].stats
    assert "frozen" not in stats and len(stats["width_ties"]) == 1
    width = pruned.embed.out_features
    assert width < 80 and pruned.head.in_features == 4 * width
    assert all(block.attn.num_heads * 16 == width for block in pruned.blocks)
    assert _matches_its_onnx_export(pruned, x, tmp_path)


def test_a_model_that_runs_but_computes_something_else_is_caught() -> None:
    """At 64 channels and 8 heads the plan prunes the residual to 56 and one head (7 x 8 = 56): the user's code
    then runs with ``56 // 8 = 7`` as the head width, 8 heads of 7 where the graph has 7 of 8. Only comparing the
    values finds that; the stale ``num_heads`` is rewritten and the result checked against the graph."""
    pruned, stats, x = _pruned(64, 8, "local")
    assert "frozen" not in stats
    assert any("num_heads" in rule for rule in stats["size_repairs"])
    for block in pruned.blocks:
        assert block.attn.num_heads * 8 == block.attn.proj.in_features


def test_ties_pair_the_residual_with_the_head_groups_sharing_its_square_weight() -> None:
    torch.manual_seed(0)
    model = Net(80, 5).eval()
    result = analyze_coupling(graphpress.trace(model, (torch.randn(2, 7, 16),)))
    residual = next(g.index for g in result.groups if "blocks.0.attn.proj.weight[0]" in g.name())
    heads = [g.index for g in result.groups if g.unit_size > 1]
    everything = [g.index for g in result.groups]
    assert propose_ties(result, [residual], everything) == [WidthTie(residual, tuple(sorted(heads)), 16)]
    assert propose_ties(result, heads, everything) == []  # only a plain channel group leads a tie
    tie = propose_ties(result, [residual], everything)[0]
    scores = {gi: np.arange(result.groups[gi].units, dtype=float) for gi in tie.groups}
    masks = tied_keep(result, scores, tie, 2, lambda group: 1, lambda group, order, count: _drop(group, order, count))
    assert int((~masks[residual]).sum()) == 32 and all(int((~masks[gi]).sum()) == 2 for gi in heads)
    assert tied_keep(result, scores, tie, 2, lambda group: 7, _drop) is None  # 48 kept channels: no multiple of 7


def _drop(group, order, count) -> np.ndarray:
    keep = np.ones(group.units, dtype=bool)
    keep[order[:count]] = False
    return keep


class TorchAttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.fc2(torch.relu(self.fc1(x)))


def test_torch_multihead_attention_loses_whole_heads_with_its_residual(tmp_path) -> None:
    """``nn.MultiheadAttention`` asserts its heads are as wide as its input (torchvision's ViT): only a tie
    prunes either; ``embed_dim``, ``num_heads`` and ``kdim``/``vdim`` follow the weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 96), *(TorchAttentionBlock(96, 6) for _ in range(2)), nn.Linear(96, 10))
    x = torch.randn(2, 7, 16)
    pruned, report = graphpress.optimize(model.eval(), "prune-channels{ratio=0.3,scope=global}",
                                         example_inputs=(x,), return_report=True)
    stats = report.records[-1].stats
    assert "frozen" not in stats and len(stats["width_ties"]) == 1 and 0.27 <= stats["achieved_ratio"] <= 0.33
    width = pruned[0].out_features
    for block in pruned[1:3]:
        attn = block.attn
        assert attn.embed_dim == attn.kdim == attn.vdim == width < 96
        assert attn.num_heads * 16 == width and attn.head_dim == 16
    assert _matches_its_onnx_export(pruned, x, tmp_path)


class HeadScaledAttention(ResidualWidthAttention):
    """XCiT's attention: a learned scale per head makes a stale ``num_heads`` fail loudly."""

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads)
        self.temperature = nn.Parameter(torch.rand(heads, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        attention = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(b, n, c))


class TwoAttentionKinds(nn.Module):
    """Blocks of one attention class, then one of another whose stale ``num_heads`` runs silently wrong
    (``C // num_heads`` still divides): XCiT's patch attention and class attention."""

    def __init__(self, dim: int = 64, heads: int = 8):
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.blocks = nn.ModuleList(HeadScaledAttention(dim, heads) for _ in range(2))
        self.last = ResidualWidthAttention(dim, heads)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = x + block(x)
        x = x + self.last(x)
        return self.head((x + self.fc2(torch.relu(self.fc1(x)))).mean(1))


def test_a_silently_stale_head_count_in_another_class_is_repaired_too(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = TwoAttentionKinds().eval(), torch.randn(2, 7, 16)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3,scope=global}", example_inputs=(x,),
                                         return_report=True)
    stats = report.records[-1].stats
    assert "frozen" not in stats and len(stats["width_ties"]) == 1
    width = pruned.embed.out_features
    assert width < 64 and all(block.num_heads * 8 == width for block in [*pruned.blocks, pruned.last])
    assert _matches_its_onnx_export(pruned, x, tmp_path)


def test_a_tie_whose_one_head_overshoots_the_target_is_not_used() -> None:
    """Three heads: one head is a third of the residual stream, about half the parameters; at ratio 0.1 the
    tie is left out and the rest of the model prunes to the target."""
    torch.manual_seed(0)
    model, x = Net(48, 3).eval(), torch.randn(2, 7, 16)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.1,scope=global}", example_inputs=(x,),
                                         return_report=True)
    stats = report.records[-1].stats
    assert not stats.get("width_ties") and 0.07 <= stats["achieved_ratio"] <= 0.13
    assert pruned.embed.out_features == 48


class SequenceReducedAttention(nn.Module):
    """Segformer's efficient attention: keys and values come from a strided convolution over the tokens, whose
    output the forward reshapes with the input's channel count."""

    def __init__(self, dim: int):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.reduce, self.norm = nn.Conv2d(dim, dim, 2, stride=2), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        side = int(n ** 0.5)
        reduced = self.reduce(x.transpose(1, 2).reshape(b, c, side, side)).reshape(b, c, -1).transpose(1, 2)
        reduced = self.norm(reduced)
        attention = (self.q(x) @ self.k(reduced).transpose(1, 2)).softmax(-1)
        return self.o(attention @ self.v(reduced))


class SequenceReducedNet(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.attn = SequenceReducedAttention(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        x = x + self.attn(x)
        return self.head((x + self.fc2(torch.relu(self.fc1(x)))).mean(1))


def test_a_convolution_the_forward_reshapes_to_the_input_width_is_tied_channel_for_channel(tmp_path) -> None:
    torch.manual_seed(0)
    model, x = SequenceReducedNet().eval(), torch.randn(2, 16, 16)
    with torch.no_grad():  # weak convolution outputs: a plan left alone prunes more of them than of the residual
        model.attn.reduce.weight[:12] *= 1e-3
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3,scope=global}", example_inputs=(x,),
                                         return_report=True)
    stats = report.records[-1].stats
    assert "frozen" not in stats and 0.27 <= stats["achieved_ratio"] <= 0.33
    assert stats["width_ties"] == ["attn.o.bias[0], attn.o.weight[0], attn.q.weight[1], attn.reduce.weight[1], +6 more "
                                   "tied to 1 channel group(s) of equal width"]
    width = pruned.embed.out_features
    assert width < 32 and pruned.attn.reduce.out_channels == pruned.attn.reduce.in_channels == width
    assert pruned.attn.q.out_features < 32  # q/k shrink on their own: only the groups that broke are tied
    assert _matches_its_onnx_export(pruned, x, tmp_path)


def test_channel_partners_are_also_proposed_one_at_a_time() -> None:
    """GLPN: the q/k width is frozen for its own reason (a stored head size); tied along, it would fail the tie
    the sequence-reduction convolution needs, so each frozen partner is proposed alone as well."""
    torch.manual_seed(0)
    model = SequenceReducedNet().eval()
    result = analyze_coupling(graphpress.trace(model, (torch.randn(2, 16, 16),)))
    index = {name: g.index for g in result.groups for name in [g.name()]}
    residual = next(gi for name, gi in index.items() if "attn.reduce.weight[1]" in name)
    reduced = next(gi for name, gi in index.items() if "reduce.bias[0]" in name)
    query_key = next(gi for name, gi in index.items() if "attn: k.bias[0]" in name or "k.weight[0]" in name)
    everything = [g.index for g in result.groups]
    ties = propose_ties(result, [residual, reduced, query_key], everything)
    assert [(tie.channels, tie.heads, set(tie.followers)) for tie in ties[:3]] == [
        (residual, (), {reduced, query_key}), (residual, (), {min(reduced, query_key)}),
        (residual, (), {max(reduced, query_key)})]


class ReducedThenHeads(nn.Module):
    def __init__(self, dim: int = 32):
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.reduced, self.attn = SequenceReducedAttention(dim), ResidualWidthAttention(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        x = x + self.reduced(x)
        return x + self.attn(x)


def test_head_partners_come_before_channel_partners_whatever_their_order() -> None:
    """PVT-v2: a stage's residual shares square weights with its heads and with a sequence-reduction
    convolution; the tie goes to the heads (one rule for whole heads), however the groups are numbered."""
    torch.manual_seed(0)
    model = ReducedThenHeads().eval()
    result = analyze_coupling(graphpress.trace(model, (torch.randn(2, 16, 16),)))
    residual = next(g.index for g in result.groups if "embed.bias[0]" in g.name())
    reduced = next(g.index for g in result.groups if "reduce.bias[0]" in g.name())
    heads = next(g.index for g in result.groups if g.unit_size > 1)
    for order in ([g.index for g in result.groups], [g.index for g in reversed(result.groups)]):
        ties = propose_ties(result, [residual, reduced], order)
        assert ties[0].channels == residual and ties[0].heads == (heads,) and ties[0].per_head == 8


class ReducedHeadAttention(nn.Module):
    """PVT-v2's attention: heads split by ``C // num_heads`` and keys and values from a strided convolution
    reshaped with ``C``, so the residual, the heads and the convolution's output shrink together."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.reduce, self.norm = nn.Conv2d(dim, dim, 2, stride=2), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        side, head_dim = int(n ** 0.5), c // self.num_heads
        q = self.q(x).reshape(b, n, self.num_heads, head_dim).transpose(1, 2)
        reduced = self.reduce(x.transpose(1, 2).reshape(b, c, side, side)).reshape(b, c, -1).transpose(1, 2)
        kv = self.kv(self.norm(reduced)).reshape(b, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        return self.proj(((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


def test_heads_and_a_reduction_convolution_are_tied_to_the_residual_together(tmp_path) -> None:
    torch.manual_seed(0)
    model = Net(64, 8).eval()
    for block in model.blocks:
        block.attn = ReducedHeadAttention(64, 8)
    x = torch.randn(2, 16, 16)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=(x,), return_report=True)
    stats = report.records[-1].stats
    assert "frozen" not in stats and 0.27 <= stats["achieved_ratio"] <= 0.33
    assert len(stats["width_ties"]) == 1 and "head group(s)" in stats["width_ties"][0] \
        and "channel group(s) of equal width" in stats["width_ties"][0]
    width = pruned.embed.out_features
    for block in pruned.blocks:
        assert block.attn.num_heads * 8 == block.attn.reduce.out_channels == width < 64
    assert _matches_its_onnx_export(pruned, x, tmp_path)
