"""ONNX files quantized by onnxruntime's static quantizer (QDQ format): int8 weights read through
DequantizeLinear, activations through QuantizeLinear -> DequantizeLinear pairs. They prune like their float
twins: codes, per-channel scales and zero points are sliced together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import graphpress
from graphpress.backends.onnx import run_onnxruntime
from graphpress.frontends.onnx_import import load_onnx

quantization = pytest.importorskip("onnxruntime.quantization")

DEAD = 16  # hidden channels of the first layer with zero weights: pruning them changes nothing


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(32, 64), nn.Linear(64, 32)
        self.head = nn.Linear(32, 8)
        with torch.no_grad():
            self.up.weight[:DEAD] = 0
            self.up.bias[:DEAD] = 0
            self.down.weight[:, :DEAD] = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x + self.down(torch.relu(self.up(x))))


class _Feed(quantization.CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches = iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"x": batch}


@pytest.fixture(scope="module", params=[False, True], ids=["per-tensor", "per-channel"])
def qdq_file(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qdq")
    torch.manual_seed(0)
    float_path, path = folder / "float.onnx", folder / "qdq.onnx"
    graphpress.export_onnx(_Mlp().eval(), float_path, example_inputs=(torch.randn(4, 32),))
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 32)).astype(np.float32) for _ in range(4)]
    quantization.quantize_static(str(float_path), str(path), _Feed(batches), per_channel=request.param,
                                 quant_format=quantization.QuantFormat.QDQ)
    return path


def test_quantized_weights_count_and_couple_as_weights(qdq_file):
    graph = load_onnx(str(qdq_file))
    codes = [n.inputs[0] for n in graph.nodes if n.op == "DequantizeLinear" and n.inputs[0].param is not None
             and n.inputs[0].param.dtype == torch.int8]
    assert len(codes) == 3 and all(v.param.kind == "parameter" for v in codes)


def test_pruning_a_qdq_file_removes_dead_channels_exactly(qdq_file):
    x = np.random.default_rng(1).standard_normal((4, 32)).astype(np.float32)
    original = onnx.load(qdq_file)
    pruned, report = graphpress.optimize(str(qdq_file), "prune-channels{ratio=0.25,scope=global}", return_report=True)
    onnx.checker.check_model(pruned, full_check=True)
    shapes = {i.name: list(i.dims) for i in pruned.graph.initializer
              if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2}
    assert sorted(shapes.values()) == [[8, 32], [32, 48], [48, 32]]  # up and down lost the 16 dead channels
    assert report.records[-1].stats["removed_params"] > 0
    np.testing.assert_array_equal(run_onnxruntime(pruned, [x])[0], run_onnxruntime(original, [x])[0])
