"""ONNX files written by tf2onnx from Keras models (fixtures/, made by fixtures/make_keras_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

import graphpress
from graphpress.analysis.coupling import compute_coupling
from graphpress.backends.onnx import run_onnxruntime
from graphpress.frontends.onnx_import import load_onnx

FIXTURES = Path(__file__).parent / "fixtures"


def _inputs(path: Path, batch: int = 2) -> list[np.ndarray]:
    shape = [d.dim_value or batch for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    return [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]


def _pruned(path: Path) -> tuple[onnx.ModelProto, dict]:
    model, report = graphpress.optimize(str(path), "prune-channels{ratio=0.3}", return_report=True)
    onnx.checker.check_model(model, full_check=True)
    return model, report.records[-1].stats


def test_keras_dense_on_a_sequence_prunes_through_run_time_reshapes():
    # Dense on [batch, 12, 32] is Reshape([-1, 32]) -> MatMul -> Reshape(concat(shape(x)[:2], [64])): the two
    # reshapes carry unrelated run-time symbols for the rows, and the 64 lives in a constant of the Concat.
    path = FIXTURES / "keras_encoder_tf2onnx_op17.onnx"
    pruned, stats = _pruned(path)
    assert stats["achieved_ratio"] >= 0.2 and stats["removed_params"] > 0
    widths = [init.dims for init in pruned.graph.initializer if len(init.dims) == 2]
    assert [32, 64] not in [list(w) for w in widths]  # the feed-forward's hidden layer shrank
    inputs = _inputs(path)
    assert run_onnxruntime(pruned, inputs)[0].shape == run_onnxruntime(onnx.load(path), inputs)[0].shape


def test_keras_attention_heads_merged_with_the_batch_are_frozen_with_the_reason():
    # tf2onnx writes the einsums of MultiHeadAttention as MatMuls over [batch * heads, ...] reshapes whose
    # sizes exist only at run time: the heads are found, then frozen, and the reason says why.
    result = compute_coupling(load_onnx(str(FIXTURES / "keras_encoder_tf2onnx_op17.onnx")))
    heads = [g for g in result.groups if g.unit_size == 8 and g.units == 4]
    assert heads and not any(g.prunable for g in heads)
    assert all(any("run time" in r for r in g.frozen_reasons.values()) for g in heads)


def test_keras_nhwc_cnn_prunes_and_quantizes():
    path = FIXTURES / "keras_cnn_tf2onnx_op13.onnx"
    inputs = _inputs(path)
    expected = run_onnxruntime(onnx.load(path), inputs)[0]
    pruned, stats = _pruned(path)
    assert stats["achieved_ratio"] >= 0.25
    assert run_onnxruntime(pruned, inputs)[0].shape == expected.shape
    quantized = graphpress.optimize(str(path), "quantize{bits=8,group=0}")
    assert np.abs(run_onnxruntime(quantized, inputs)[0] - expected).max() <= 0.05 * np.abs(expected).max()


def test_keras_attention_with_a_fixed_batch_folds_to_static_shapes_and_prunes_heads():
    # With the batch fixed every size of attention's reshapes is known, but only after folding: each folded
    # Shape -> Concat makes a Reshape's output static, whose own Shape folds in the next round. One round left
    # 'unk' dims that froze the heads; folding now runs to a fixed point.
    path = FIXTURES / "keras_encoder_static_tf2onnx_op17.onnx"
    graph = load_onnx(str(path))
    assert all(isinstance(d, int) for node in graph.nodes for out in node.outputs for d in out.shape)
    heads = [g for g in compute_coupling(graph).groups if g.unit_size == 8 and g.units == 4]
    assert len(heads) == 1 and heads[0].prunable
    pruned, stats = _pruned(path)
    assert stats["groups_pruned"] == 2  # the feed-forward width and the heads (one of four, whole)
    shrunk = {init.name: list(init.dims) for init in pruned.graph.initializer}
    assert [shrunk.get(m.key) for m in heads[0].members].count([24, 32]) == 3  # query, key and value lost a head
    inputs = _inputs(path)
    assert run_onnxruntime(pruned, inputs)[0].shape == run_onnxruntime(onnx.load(path), inputs)[0].shape
