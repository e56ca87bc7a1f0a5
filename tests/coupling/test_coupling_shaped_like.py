"""A constant the model computes at another tensor's size (``zeros_like(x)``) shares that tensor's channels.

The frontend lowers ``zeros_like``/``ones_like``/``full_like`` to constants, but the model recomputes them from
their input in every call: pruning that input's channels shrinks them too, so the coupling analysis must give
them its channels (DETR-style decoders start from ``zeros_like(query_embeddings)``)."""

from __future__ import annotations

import torch
from torch import nn

import graphpress
from graphpress.analysis.coupling import compute_coupling
from graphpress.frontends.torch_export import trace


class _StartsFromZeros(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.queries = nn.Embedding(8, 32)
        self.content = nn.Linear(32, 32)  # reads the zeros: its input features are the queries' features
        self.position = nn.Linear(32, 32)
        self.mlp = nn.Sequential(nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 32))
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries = self.queries.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        hidden = torch.zeros_like(queries)
        hidden = hidden + self.content(hidden) + self.position(queries)
        return self.head(hidden + self.mlp(hidden))


def _group_of(result, key: str, axis: int) -> set[tuple[str, int]]:
    return next({(m.key, m.axis) for m in g.members} for g in result.groups
                if any(m.key == key and m.axis == axis for m in g.members))


def test_zeros_like_shares_the_channels_of_its_input():
    x = torch.randn(2, 8)
    result = compute_coupling(trace(_StartsFromZeros().eval(), (x,)))
    stream = _group_of(result, "queries.weight", 1)
    assert {("content.weight", 1), ("position.weight", 1), ("head.weight", 1), ("mlp.2.weight", 0)} <= stream


def test_a_decoder_that_starts_from_zeros_prunes_its_stream_without_trial_runs():
    torch.manual_seed(0)
    model, x = _StartsFromZeros().eval(), torch.randn(2, 8)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3,recover=false}", example_inputs=(x,),
                                         return_report=True)
    assert pruned.queries.weight.shape[1] == pruned.content.weight.shape[1] < 32
    assert report.records[-1].stats["achieved_ratio"] > 0.25
    with torch.no_grad():
        assert pruned(x).shape == (2, 8, 4)
