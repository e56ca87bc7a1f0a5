"""ONNX files written by Hugging Face's exporter (fixtures/, made by fixtures/make_optimum_fixtures.py),
optimized without example inputs: graphpress makes inputs the model runs on from the declared shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

import graphpress
from graphpress.backends.onnx import run_onnxruntime

FIXTURES = Path(__file__).parent / "fixtures"


def _decoder_inputs(model: onnx.ModelProto, past: int = 3, new: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.input:
        dims = [d.dim_value or {"batch_size": 2, "sequence_length": new, "past_sequence_length": past}.get(
            d.dim_param, past + new) for d in value.type.tensor_type.shape.dim]
        if value.name == "input_ids":
            feeds[value.name] = rng.integers(0, 128, dims)
        elif value.name == "position_ids":
            feeds[value.name] = np.broadcast_to(np.arange(past, past + new), dims).copy()
        elif value.name == "attention_mask":
            feeds[value.name] = np.ones(dims, dtype=np.int64)
        else:
            feeds[value.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def test_decoder_with_a_cache_prunes_without_example_inputs():
    # Made-up inputs must agree on past_sequence_length + sequence_length (the mask), and the causal mask's
    # Slice has bounds computed at run time (the coupling freezes what it reads; pruning must not trip on it).
    path = FIXTURES / "optimum_gpt2_with_past.onnx"
    pruned, report = graphpress.optimize(str(path), "prune-channels{ratio=0.3}", return_report=True)
    assert report.records[-1].stats["achieved_ratio"] >= 0.25
    onnx.checker.check_model(pruned, full_check=True)
    feeds = _decoder_inputs(onnx.load(path))
    expected = run_onnxruntime(onnx.load(path), feeds)
    got = run_onnxruntime(pruned, feeds)
    assert [a.shape for a in got] == [a.shape for a in expected]  # logits and the grown cache


def test_vision_model_with_symbolic_channels_and_sides_runs_on_made_up_inputs():
    # pixel_values is [batch_size, num_channels, height, width]: the patch Conv fixes the channels at 3, and
    # only a side of 32 matches the position table, found by trying sizes until the model runs.
    path = FIXTURES / "optimum_vit.onnx"
    pruned, report = graphpress.optimize(str(path), "prune-channels{ratio=0.3}", return_report=True)
    assert report.records[-1].stats["achieved_ratio"] >= 0.25
    x = [np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)]
    assert run_onnxruntime(pruned, x)[0].shape == run_onnxruntime(onnx.load(path), x)[0].shape == (2, 5)
