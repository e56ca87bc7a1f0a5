"""A fused q/k/v projection reshaped to ``[..., 3, heads, head_dim]`` and cut into q, k and v (timm's attention,
``nn.MultiheadAttention``'s packed projection): whole heads are units, shared by q, k and v."""

from __future__ import annotations

import torch
from torch import nn

import graphpress
from graphpress.analysis.coupling import analyze_coupling


class FusedAttention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, pick: str = "unbind"):
        super().__init__()
        self.heads, self.pick = heads, pick
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
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
