"""Grouped convolutions with few wide groups prune by positions within the groups (AlexNet, ShuffleNet).

A convolution of 2 groups of 8 channels used to prune only by whole groups: removing one group is half the
layer, so nothing was ever pruned there. Now position ``j`` of every group is one unit on each side, the
groups stay equal, and ``group`` stays as it was.
"""

from __future__ import annotations

import torch
from torch import nn

import graphpress
from graphpress.analysis.coupling import compute_coupling
from graphpress.frontends.torch_export import trace


class GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.grouped(x))
        return self.head(torch.relu(self.depthwise(x))).mean((2, 3))


def _group_of(result, key: str, axis: int):
    return next(g for g in result.groups if any(m.key == key and m.axis == axis for m in g.members))


def test_position_j_of_every_group_is_one_unit() -> None:
    torch.manual_seed(0)
    result = compute_coupling(trace(GroupedNet().eval(), (torch.randn(1, 3, 8, 8),)))
    stem = _group_of(result, "stem.weight", 0)
    member = next(m for m in stem.members if m.key == "stem.weight")
    assert stem.units == 8 and stem.prunable_units == 8
    assert list(member.unit_of[:8]) == list(member.unit_of[8:])  # channel j and 8 + j: one unit
    assert any(m.key == "grouped.weight" and m.axis == 1 for m in stem.members)
    outputs = _group_of(result, "grouped.weight", 0)  # 32 outputs in 2 groups: 16 units, shared with the depthwise
    assert outputs.units == 16 and any(m.key == "depthwise.weight" and m.axis == 0 for m in outputs.members)


def test_pruned_units_with_zero_weights_leave_the_output_exact() -> None:
    """Units whose weights are all zero score lowest; removing them must not change a single output.

    Half the units of both groups are zeroed: the stem's channels j and 8 + j (with the grouped conv's
    column j), and the grouped conv's outputs j and 16 + j (with the depthwise channels and head columns)."""
    torch.manual_seed(0)
    model = GroupedNet().eval()
    with torch.no_grad():
        for j in range(4):
            model.stem.weight[[j, 8 + j]] = 0
            model.stem.bias[[j, 8 + j]] = 0
            model.grouped.weight[:, j] = 0
        for j in range(8):
            for module in (model.grouped, model.depthwise):
                module.weight[[j, 16 + j]] = 0
                module.bias[[j, 16 + j]] = 0
            model.head.weight[:, [j, 16 + j]] = 0
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    pruned = graphpress.optimize(model, "prune-channels{ratio=0.3,scope=local}", example_inputs=(x[:1],))
    assert pruned.grouped.groups == 2 and pruned.grouped.in_channels < 16 and pruned.grouped.out_channels < 32
    assert pruned.grouped.out_channels % 2 == 0 and pruned.depthwise.groups == pruned.grouped.out_channels
    assert pruned.stem.out_channels == pruned.grouped.in_channels
    assert pruned.grouped.weight.shape[1] * 2 == pruned.grouped.in_channels
    torch.testing.assert_close(pruned(x), expected, rtol=1e-5, atol=1e-5)
