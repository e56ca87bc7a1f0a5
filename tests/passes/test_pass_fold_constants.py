"""fold-constants: a node whose inputs are all constants becomes its result, shape and all."""

import torch

from graphpress.ir import Graph
from graphpress.passes.cleanup import FoldConstants
from graphpress.passes.context import PassContext


def _fold(graph: Graph) -> Graph:
    return FoldConstants().call(graph, PassContext()).graph


def test_a_folded_scalar_stays_zero_dimensional() -> None:
    graph = Graph()
    x = graph.add_input("x", (3,), torch.float32)
    total = graph.make_node("Add", [graph.constant(torch.tensor(2.0)), graph.constant(torch.tensor(3.0))])
    total.outputs[0].shape, total.outputs[0].dtype = (), torch.float32
    out = graph.make_node("Mul", [x, total.outputs[0]])
    out.outputs[0].shape, out.outputs[0].dtype = (3,), torch.float32
    graph.outputs = [out.outputs[0]]
    folded = _fold(graph)
    assert [n.op for n in folded.nodes] == ["Mul"]
    scalar = folded.nodes[0].input(1).param.data
    assert scalar.shape == () and float(scalar) == 5.0  # shape (1,) would turn 0-d results into 1-d ones
