"""Shared weights in the coupling analysis: every reader of one stored tensor, in whatever layout it reads
it, gets the same channel ids along each axis, so pruning keeps the tensor whole and one."""

from __future__ import annotations

import numpy as np
import torch

from graphpress.analysis.coupling import compute_coupling
from graphpress.ir import GRAPHPRESS_DOMAIN, DetachedBinding, Graph, Parameter, transposed_binding
from graphpress.ir.parameter import TransposedBinding, storage_binding
from graphpress.passes.prune.apply import apply_keep_mask


def _autoencoder() -> tuple[Graph, Parameter]:
    """x[.., 16] -> Linear(W[8, 16]) -> Relu -> Linear(W^T, a transposed view of the same tensor) -> y."""
    graph = Graph("tied", origin="onnx")
    x = graph.add_input("x", (2, 16), torch.float32)
    stored = DetachedBinding("W", torch.randn(8, 16))
    w = graph.add_constant(Parameter(stored), "W")
    wt = graph.add_constant(Parameter(transposed_binding(stored)), "W_t")
    h = graph.make_node("Linear", [x, w], domain=GRAPHPRESS_DOMAIN).outputs[0]
    h.shape, h.dtype = (2, 8), torch.float32
    a = graph.make_node("Relu", [h]).outputs[0]
    a.shape, a.dtype = (2, 8), torch.float32
    y = graph.make_node("Linear", [a, wt], domain=GRAPHPRESS_DOMAIN).outputs[0]
    y.shape, y.dtype = (2, 16), torch.float32
    graph.outputs = [y]
    return graph, w.param


def test_transposed_binding_composes_and_reads_through():
    stored = DetachedBinding("W", torch.arange(6.0).reshape(2, 3))
    view = transposed_binding(stored)
    assert isinstance(view, TransposedBinding) and storage_binding(view) is stored
    assert transposed_binding(view) is stored
    view.set(torch.zeros(3, 1))
    assert stored.get().shape == (1, 3) and view.get().shape == (3, 1)


def test_layouts_of_one_tensor_share_ids():
    graph, _ = _autoencoder()
    state = compute_coupling(graph).state
    plain = {axis: e.ids for (key, axis), e in state.param_axes.items() if key[1] == ""}
    transposed = {axis: e.ids for (key, axis), e in state.param_axes.items() if key[1] == "transposed"}
    np.testing.assert_array_equal(plain[0], transposed[1])
    np.testing.assert_array_equal(plain[1], transposed[0])


def test_pruning_a_shared_tensor_slices_it_once():
    graph, param = _autoencoder()
    result = compute_coupling(graph)
    group = next(g for g in result.groups if g.prunable)
    keep = np.ones(group.units, dtype=bool)
    keep[[1, 5]] = False
    apply_keep_mask(graph, result, result.keep_ids({group.index: keep}))
    constants = [c for c in graph.constants if c.param is not None and c.param.data.dim() == 2]
    assert {storage_binding(c.param.binding) for c in constants} == {param.binding}
    assert sorted(tuple(c.shape) for c in constants) == [(6, 16), (16, 6)]
