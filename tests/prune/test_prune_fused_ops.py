"""prune-channels through onnxruntime's fused com.microsoft ops: a file with FusedConv, FusedMatMul, Gelu,
FastGelu and SkipLayerNormalization prunes exactly as its unfused twin (same weights, same channels
removed, same outputs), and the pruned file keeps the fused ops, passes onnx.checker and runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import graphpress
from graphpress.backends.onnx.runtime import run_onnxruntime
from graphpress.testing.onnx_fused import fused_conv_net, fused_transformer_block


def _prune(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, dict]:
    example = tuple(torch.from_numpy(inputs[i.name]) for i in model.graph.input)
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=example,
                                         return_report=True)
    return pruned, report.records[-1].stats


@pytest.mark.parametrize("build", [fused_transformer_block, lambda: fused_transformer_block(sum_output=True),
                                   fused_conv_net], ids=["block", "block-sum-output", "conv"])
def test_fused_file_prunes_like_its_unfused_twin(build):
    fused, unfused, inputs = build()
    pruned, stats = _prune(fused, inputs)
    reference, reference_stats = _prune(unfused, inputs)
    assert stats["achieved_ratio"] >= 0.25 and "frozen_by" not in stats
    assert stats["achieved_ratio"] == reference_stats["achieved_ratio"]
    onnx.checker.check_model(pruned, full_check=True)
    assert sorted(n.op_type for n in pruned.graph.node if n.domain) == sorted(n.op_type for n in fused.graph.node if n.domain)
    out, expected = run_onnxruntime(pruned, inputs)[0], run_onnxruntime(reference, inputs)[0]
    assert out.shape == run_onnxruntime(fused, inputs)[0].shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
