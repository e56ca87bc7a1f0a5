"""Issue 3 acceptance on tiny models: prune-channels{ratio=0.3} on the torch path and on the ONNX path."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch

import graphpress
from graphpress.backends.onnx.runtime import run_onnxruntime

TORCH_CASES = ["llama", "llama_tied", "mistral", "qwen2", "qwen3", "phi3", "gemma", "mixtral", "gpt2", "bert", "vit",
               "resnet", "mobilenet", "segnet",
               # from benchmarks/arch_sweep.py: x @ weight.T linears, weightless LayerNorm, no token embeddings
               "falcon", "olmo", "resnet_hf",
               "mamba"]  # a state-space model: no attention, a selective scan unrolled over the sequence
ONNX_CASES = ["llama", "mistral", "qwen2", "gemma", "llama_tied", "qwen3", "phi3", "mixtral", "gpt2", "bert", "vit",
              "resnet", "mobilenet", "segnet"]


@pytest.mark.parametrize("name", TORCH_CASES)
def test_prune_torch_model_keeps_class_shapes_and_onnx_parity(name, zoo):
    case = zoo.build(name)
    pruned, report = graphpress.optimize(case.model, "prune-channels{ratio=0.3}", return_report=True,
                                         **zoo.kwargs(case))
    stats = report.records[-1].stats
    assert type(pruned) is type(case.model)
    assert 0.27 <= stats["achieved_ratio"] <= 0.33
    count = lambda m: sum(t.numel() for t in [*m.parameters(), *m.buffers()])  # noqa: E731 (BN stats count)
    before, after = count(case.model), count(pruned)
    assert before - after == pytest.approx(stats["removed_params"], rel=0.02)
    assert [o.shape for o in zoo.call(pruned, case)] == [o.shape for o in zoo.call(case.model, case)]
    assert zoo.onnx_matches(pruned, case) <= 1e-4


@pytest.mark.parametrize("name", ONNX_CASES)
def test_prune_onnx_model_runs_in_onnxruntime(name, tmp_path, zoo):
    case = zoo.build(name)
    path = os.path.join(tmp_path, "model.onnx")
    kwargs = zoo.kwargs(case)
    graphpress.export_onnx(case.model, path, kwargs["example_inputs"], example_kwargs=kwargs.get("example_kwargs"))
    proto = onnx.load(path)
    names = [i.name for i in proto.graph.input]
    inputs = [case.inputs[n] for n in names] if isinstance(case.inputs, dict) else list(case.inputs)
    pruned, report = graphpress.optimize(path, "prune-channels{ratio=0.3}", example_inputs=tuple(inputs),
                                         return_report=True)
    assert 0.27 <= report.records[-1].stats["achieved_ratio"] <= 0.33
    before, after = run_onnxruntime(proto, inputs)[0], run_onnxruntime(pruned, inputs)[0]
    assert before.shape == after.shape and torch.isfinite(torch.as_tensor(after)).all()
    count = lambda m: sum(int(np.prod(i.dims)) for i in m.graph.initializer)  # noqa: E731
    assert count(pruned) < 0.8 * count(proto)
