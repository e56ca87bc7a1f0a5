import pytest
import torch

from graphpress.errors import VerificationError
from graphpress.ir import Graph, Node, format_graph, to_networkx, verify


def _mlp() -> Graph:
    g = Graph("mlp", origin="onnx")
    x = g.add_input("x", (1, 4), torch.float32)
    w1 = g.constant(torch.randn(8, 4), "w1")
    w2 = g.constant(torch.randn(2, 8), "w2")
    h = g.make_node("Linear", [x, w1], domain="graphpress").outputs[0]
    r = g.make_node("Relu", [h]).outputs[0]
    y = g.make_node("Linear", [r, w2], domain="graphpress").outputs[0]
    g.outputs = [y]
    return g


def test_verify_accepts_a_sound_graph_and_tracks_uses():
    g = _mlp()
    verify(g)
    relu = g.find("Relu")[0]
    assert relu.inputs[0].uses == [(relu, 0)]
    assert len(to_networkx(g).edges) == 2
    assert "graphpress::Linear" in format_graph(g)


def test_verify_names_a_node_reading_an_undefined_value():
    g = _mlp()
    stray = g.new_value("stray", (1, 4), torch.float32)
    g.make_node("Relu", [stray])
    with pytest.raises(VerificationError, match="dangling"):
        verify(g)


def test_verify_catches_non_topological_order():
    g = _mlp()
    g.nodes.reverse()
    with pytest.raises(VerificationError, match="not topological"):
        verify(g)


def test_remove_refuses_a_node_whose_output_is_used_and_replace_all_uses_rewires():
    g = _mlp()
    relu = g.find("Relu")[0]
    with pytest.raises(ValueError, match="still used"):
        g.remove(relu)
    g.replace_all_uses(relu.outputs[0], relu.inputs[0])
    g.remove(relu)
    verify(g)
    assert not g.find("Relu")


def test_unique_names_never_collide():
    g = Graph()
    names = {g.unique_name("v") for _ in range(100)}
    assert len(names) == 100


def test_node_set_input_keeps_use_lists_consistent():
    g = _mlp()
    relu = g.find("Relu")[0]
    x = g.inputs[0]
    old = relu.inputs[0]
    relu.set_input(0, x)
    assert (relu, 0) in x.uses and (relu, 0) not in old.uses
    assert isinstance(relu, Node)
