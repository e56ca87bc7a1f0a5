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
