"""Pruning weights read by several nodes (shared layers, tied embeddings, one initializer read twice): the
readers keep the same channels, so the result holds one smaller tensor per shared weight, never a copy per
reader, and a pruned file is never larger than its input."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch

import graphpress
from graphpress.backends.onnx.runtime import run_onnxruntime
from graphpress.testing.onnx_exporters import export_torch
from graphpress.testing.onnx_handmade import HANDMADE


def _float_params(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)


def _matrices(model: onnx.ModelProto) -> int:
    return sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2)


def _prune(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, float]:
    names = [i.name for i in model.graph.input]
    example = tuple(torch.from_numpy(inputs[n]) for n in names)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=example,
                                         return_report=True)
    before, after = run_onnxruntime(model, list(example)), run_onnxruntime(pruned, list(example))
    assert [o.shape for o in after] == [o.shape for o in before]
    return pruned, report.records[-1].stats["achieved_ratio"]


@pytest.mark.parametrize("name, shrink", [("shared-block", 0.2), ("tied-embedding", 0.25), ("shared-initializer", 0.0)])
def test_shared_initializers_stay_one_tensor(name, shrink):
    # shared-initializer chains W's two axes to the graph input and output: tied, nothing may shrink.
    model, inputs = HANDMADE[name]()
    pruned, _ = _prune(model, inputs)
    assert _float_params(pruned) <= (1 - shrink) * _float_params(model)
    assert _matrices(pruned) == _matrices(model)


def test_albert_onnx_keeps_each_shared_weight_once(tmp_path, zoo):
    path = os.path.join(tmp_path, "albert.onnx")
    inputs = export_torch(zoo.build("albert"), path, dynamo=False, opset=17)
    model = onnx.load(path)  # the legacy exporter reads the second layer's weights through Identity nodes
    pruned, achieved = _prune(model, inputs)
    assert 0.27 <= achieved <= 0.33
    assert _float_params(pruned) <= 0.75 * _float_params(model)
    assert _matrices(pruned) <= _matrices(model)  # (the position table is folded: one matrix fewer)


def test_albert_torch_shared_layer_removes_its_parameters_once(zoo):
    case = zoo.build("albert")
    count = lambda m: sum(t.numel() for t in m.parameters())  # noqa: E731 (shared modules counted once)
    pruned, report = graphpress.optimize(case.model, "prune-channels{ratio=0.3}", return_report=True,
                                         **zoo.kwargs(case))
    stats = report.records[-1].stats
    assert 0.27 <= stats["achieved_ratio"] <= 0.33
    assert count(case.model) - count(pruned) == pytest.approx(stats["removed_params"], rel=0.02)
    assert [o.shape for o in zoo.call(pruned, case)] == [o.shape for o in zoo.call(case.model, case)]
