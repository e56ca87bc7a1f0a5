"""Pruning keeps the branches the eager forward runs but discards consistent with the channels they read.

UperNet's auxiliary head runs at inference though only the training loss reads it: pruning the backbone stage
under it left the head's input at the old width, and ``recover=`` had to freeze the stage
(``auxiliary_head.convs.0.conv: expected input[2, 25, 4, 4] to have 32 channels``). DPT's and Swin's final
LayerNorm, whose result the task head never reads, froze the whole hidden size the same way."""

from __future__ import annotations

import torch
from torch import nn

import graphpress


class AuxiliaryHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.stage = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Conv2d(32, 4, 1)
        self.auxiliary = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 5, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.stage(torch.relu(self.stem(x))))
        self.auxiliary(features)  # the auxiliary logits: read by the training loss only
        return self.head(features)


class DiscardedNorm(nn.Module):
    """A backbone whose final LayerNorm the head never reads (DPT, a Swin backbone)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.mlp = nn.Sequential(nn.Linear(width, 64), nn.GELU(), nn.Linear(64, width))
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(x)
        hidden = hidden + self.mlp(hidden)
        self.final_norm(hidden)  # last_hidden_state, which the task head does not use
        return self.head(hidden)


def _prune(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, dict]:
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3,round_to=1}", example_inputs=(x,),
                                         return_report=True)
    return pruned, report.records[-1].stats


def test_the_auxiliary_head_shrinks_with_the_stage_it_reads() -> None:
    torch.manual_seed(0)
    model, x = AuxiliaryHead().eval(), torch.randn(2, 3, 8, 8)
    pruned, stats = _prune(model, x)
    assert "frozen" not in stats, stats.get("frozen")
    assert pruned.stage.out_channels < 32
    assert pruned.auxiliary[0].in_channels == pruned.stage.out_channels == pruned.head.in_channels
    assert pruned.auxiliary[0].out_channels < 16  # its own hidden channels are prunable too
    assert pruned.auxiliary[2].out_channels == 5  # its classes: what the training loss reads
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape
        assert pruned.auxiliary(torch.relu(pruned.stage(torch.relu(pruned.stem(x))))).shape == (2, 5, 8, 8)


def test_a_discarded_norm_shrinks_with_the_hidden_size() -> None:
    torch.manual_seed(0)
    model, x = DiscardedNorm().eval(), torch.randn(2, 5, 8)
    pruned, stats = _prune(model, x)
    assert "frozen" not in stats, stats.get("frozen")
    assert pruned.embed.out_features < 32
    assert pruned.final_norm.normalized_shape == (pruned.embed.out_features,)
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape
