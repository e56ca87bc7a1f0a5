"""Coupling patterns of vision models found by benchmarks/vision_zoo_sweep.py."""

from __future__ import annotations

import torch

from graphpress.analysis.coupling import compute_coupling
from graphpress.ir import GRAPHPRESS_DOMAIN, Graph


def test_an_axis_holding_units_of_several_groups_keeps_one_of_each() -> None:
    """CoaT's convolutional position encoding concatenates convolutions of different kernels, each a coupling
    group of its own, into one channel axis that no weight reads whole. Every group with units on that axis
    must keep one of them there (the analysis indexed all of them as units of the first group: IndexError)."""
    graph = Graph("concat_of_groups")
    x = graph.add_input("x", (1, 8), torch.float32)
    pieces = []
    for name, width in (("small", 2), ("large", 6)):
        weight = graph.constant(torch.randn(width, 8), f"{name}.weight")
        weight.param.kind = "parameter"
        node = graph.make_node("Linear", [x, weight], 1, domain=GRAPHPRESS_DOMAIN)
        node.outputs[0].shape, node.outputs[0].dtype = (1, width), torch.float32
        pieces.append(node.outputs[0])
    concat = graph.make_node("Concat", pieces, 1, {"axis": 1})
    concat.outputs[0].shape, concat.outputs[0].dtype = (1, 8), torch.float32
    axes = graph.constant(torch.tensor([1]), "axes")
    total = graph.make_node("ReduceMax", [concat.outputs[0], axes], 1, {"keepdims": 1})
    total.outputs[0].shape, total.outputs[0].dtype = (1, 1), torch.float32
    graph.outputs.append(total.outputs[0])

    result = compute_coupling(graph)
    by_width = {g.units: g for g in result.groups}
    assert {2, 6} <= set(by_width)
    for group in (by_width[2], by_width[6]):  # the concatenated axis holds every unit of each group: nothing to add
        assert not any(len(units) < group.units for units in group.keep_one)


class _ResizedPositions(torch.nn.Module):
    """DPT's ``_resize_pos_embed``: a learned grid of positions, reshaped to an image, resized to the input's
    patch grid and added to the tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 8)
        self.position_embeddings = torch.nn.Parameter(torch.randn(1, 16, 8))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        grid = self.position_embeddings[0]
        side = int(grid.shape[0] ** 0.5)  # the model takes the grid's side from the number of positions
        grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bilinear")
        return self.head(self.proj(tokens) + grid.permute(0, 2, 3, 1).reshape(1, 16, -1))


def test_resized_positions_of_a_learned_grid_keep_their_size() -> None:
    """Resize and pooling act on positions, not channels: a position-embedding grid's positions reach the Resize
    with ids of their own (its output size is fixed), and pruning them left DPT's grid with 12 of 16 positions,
    which its forward reshapes to sqrt(12) squared (``shape '[1, 3, 3, -1]' is invalid``, arch_sweep dpt)."""
    from graphpress.frontends.torch_export import trace

    result = compute_coupling(trace(_ResizedPositions().eval(), (torch.randn(2, 16, 4),)))
    positions = [g for g in result.groups if any(m.key == "position_embeddings" and m.axis == 1 for m in g.members)]
    assert positions and not any(g.prunable for g in positions)
    channels = [g for g in result.groups if any(m.key == "position_embeddings" and m.axis == 2 for m in g.members)]
    assert channels and all(g.prunable for g in channels)  # the channels still prune
