"""Einsum couples by its equation's letters: a contracted letter ties a weight's axis to the activation's, an
output axis takes its letter's channels, and a diagonal freezes what it reads."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import graphpress
from graphpress.analysis.coupling import compute_coupling
from graphpress.analysis.coupling.rules_einsum import einsum_axes
from graphpress.backends.onnx import run_onnxruntime
from graphpress.frontends.onnx_import import load_onnx


def test_equations_are_read_with_ellipses_and_implicit_outputs():
    assert einsum_axes("bti,io->bto", [3, 2]) == ([["b", "t", "i"], ["i", "o"]], ["b", "t", "o"])
    # '...' spells the broadcast axes, right-aligned across operands; implicit outputs are the letters used
    # once, alphabetically, after the broadcast axes (numpy's and ONNX's rule)
    assert einsum_axes("...ij,jk", [4, 2]) == ([["0", "1", "i", "j"], ["j", "k"]], ["0", "1", "i", "k"])
    assert einsum_axes("ba,ac", [2, 2]) == ([["b", "a"], ["a", "c"]], ["b", "c"])
    assert einsum_axes("ij,jk->ik", [3, 2]) is None  # the equation does not fit the operand's rank


def _mlp(hidden_zeros: int = 0, first: str = "bti,io->bto", second: str = "bto,oj->btj") -> onnx.ModelProto:
    """x [2, 5, 16] -> Einsum(W1 [16, 32]) -> Relu -> Einsum(W2 [32, 16]) -> + x, the first ``hidden_zeros``
    hidden channels dead (zero weights on both sides)."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 32)).astype(np.float32)
    w2 = rng.standard_normal((32, 16)).astype(np.float32)
    w1[:, :hidden_zeros] = 0
    w2[:hidden_zeros] = 0
    nodes = [helper.make_node("Einsum", ["x", "w1"], ["h"], equation=first),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Einsum", ["r", "w2"], ["y"], equation=second),
             helper.make_node("Add", ["x", "y"], ["out"])]
    graph = helper.make_graph(nodes, "einsum_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 5, 16])],
                              initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_contracted_letter_couples_the_two_weights():
    result = compute_coupling(load_onnx(_mlp()))
    assert not result.uncovered
    hidden = [g for g in result.groups if {(m.key, m.axis) for m in g.members} == {("w1", 1), ("w2", 0)}]
    assert len(hidden) == 1 and hidden[0].prunable


def test_pruning_through_einsum_removes_dead_channels_exactly():
    model = _mlp(hidden_zeros=8)
    x = np.random.default_rng(1).standard_normal((2, 5, 16)).astype(np.float32)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.25}", return_report=True)
    onnx.checker.check_model(pruned, full_check=True)
    widths = {i.name: list(i.dims) for i in pruned.graph.initializer}
    assert widths["w1"] == [16, 24] and widths["w2"] == [24, 16]
    np.testing.assert_allclose(run_onnxruntime(pruned, [x])[0], run_onnxruntime(model, [x])[0], rtol=1e-5, atol=1e-5)


def test_a_diagonal_freezes_the_letters_it_reads():
    # 'bii' reads the diagonal of a square tensor: its two axes can't shrink apart, so both stay whole
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Reshape", ["h", "shape"], ["sq"]),
             helper.make_node("Einsum", ["sq"], ["d"], equation="bii->bi")]
    graph = helper.make_graph(
        nodes, "diag", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [2, 4])],
        initializer=[numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w"),
                     numpy_helper.from_array(np.array([2, 4, 4], dtype=np.int64), "shape")])
    result = compute_coupling(load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])))
    reasons = [r.reason for r in result.state.frozen]
    assert any("diagonal" in r for r in reasons)
    assert not any(g.prunable for g in result.groups)
