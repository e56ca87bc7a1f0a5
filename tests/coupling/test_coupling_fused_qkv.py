"""A fused q/k/v projection reshaped to ``[..., 3, heads, head_dim]`` and cut into q, k and v (timm's attention,
``nn.MultiheadAttention``'s packed projection): whole heads are units, shared by q, k and v."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import graphpress
from graphpress.analysis.coupling import analyze_coupling


class FusedAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, pick: str = "unbind"):
        super().__init__()
        self.heads, self.pick = heads, pick
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.qkv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.project(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.pick == "unbind":
            q, k, v = qkv.unbind(0)
        elif self.pick == "index":
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:  # the three pieces summed: the axis is not cut into q, k and v
            q = k = v = qkv.sum(0)
        attention = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(b, n, c))


def _groups_of(model: nn.Module) -> dict[str, tuple[int, int]]:
    graph = graphpress.trace(model.eval(), (torch.randn(2, 5, 32),))
    return {group.name(): (group.units, group.unit_size) for group in analyze_coupling(graph).groups}


def test_unbound_fused_projection_prunes_whole_heads() -> None:
    groups = _groups_of(FusedAttention())
    assert groups["proj.weight[1], qkv.bias[0], qkv.weight[0]"] == (4, 24)  # 4 heads of q, k and v (3 x 8 rows)


def test_indexed_pieces_count_as_cut_too() -> None:
    groups = _groups_of(FusedAttention(pick="index"))
    assert groups["proj.weight[1], qkv.bias[0], qkv.weight[0]"] == (4, 24)


def test_an_axis_used_whole_keeps_its_pieces_as_units() -> None:
    """Summing over the q/k/v axis reads the three pieces together: no head structure may be assumed."""
    groups = _groups_of(FusedAttention(pick="sum"))
    assert not any(units == 4 for units, _ in groups.values())


class TorchAttention(nn.Module):
    """``nn.MultiheadAttention`` picks q, k and v out of its packed projection through an unsqueeze, a transpose
    and a squeeze before selecting each (torch's ``_in_projection_packed``)."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


def test_torch_multihead_attention_prunes_whole_heads_through_squeezes() -> None:
    groups = _groups_of(TorchAttention())
    assert groups["attention: in_proj_bias[0], in_proj_weight[0], out_proj.weight[1]"] == (4, 24)


class ZeroedKeyBiasAttention(FusedAttention):
    """torchvision's Swin-V2 zeroes the k third of a copy of the q/k/v bias in place before the projection."""

    def project(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.qkv.bias.clone()
        bias[bias.numel() // 3:2 * bias.numel() // 3].zero_()
        return F.linear(x, self.qkv.weight, bias)


def test_a_bias_slice_zeroed_in_place_keeps_whole_heads() -> None:
    """The zeros written into the window take the window's channels (the model computes them at its size): the
    k third stays part of each head instead of becoming frozen channels of a constant."""
    groups = _groups_of(ZeroedKeyBiasAttention())
    assert groups["proj.weight[1], qkv.bias[0], qkv.weight[0]"] == (4, 24)


def test_groups_are_named_after_the_module_tensors_not_the_graph_made_zeros() -> None:
    """The zeros are a graph constant named after the node that made it (``zeros_like_1``): left out of the
    group's name, which then keeps its block prefix, and out of the block pattern that finds the same group in
    repeated blocks (with it, every block's heads looked like different code to ``recover=``)."""
    from graphpress.passes.prune import recover

    model = nn.Sequential(ZeroedKeyBiasAttention(), ZeroedKeyBiasAttention()).eval()
    result = analyze_coupling(graphpress.trace(model, (torch.randn(2, 5, 32),)))
    heads = {g.name(): g.index for g in result.groups if g.units == 4}
    assert set(heads) == {"0: proj.weight[1], qkv.bias[0], qkv.weight[0]", "1: proj.weight[1], qkv.bias[0], qkv.weight[0]"}
    first, second = heads.values()
    assert any(not m.of_model for m in result.groups[first].members)  # the zeros are still a member
    assert recover._block_pattern(result, first) == recover._block_pattern(result, second)
