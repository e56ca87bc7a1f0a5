"""fold-linear: Linear -> Linear merges only when it saves FLOPs, exactly, on torch and ONNX."""

import copy

import pytest
import torch
from torch import nn

import graphpress
from graphpress.passes.fold_linear import linear_chain_saves
from graphpress.testing import max_relative_error as _rel
from graphpress.testing import run_onnx as _ort


class MLP(nn.Module):
    def __init__(self, fan_in: int, mid: int, out: int, bias: bool = True):
        super().__init__()
        self.l1, self.l2 = nn.Linear(fan_in, mid, bias=bias), nn.Linear(mid, out)
        self.head = nn.Linear(out, 3)

    def forward(self, x):
        return self.head(torch.relu(self.l2(self.l1(x))))


def test_flop_rule():
    assert linear_chain_saves(16, 32, 8)        # 128 < 512 + 256
    assert not linear_chain_saves(64, 8, 64)    # a bottleneck is cheaper unmerged
    assert not linear_chain_saves(8, 4, 8)      # 64 == 32 + 32: no saving, no merge


@pytest.mark.parametrize("bias", [True, False])
def test_saving_chain_is_merged_torch(bias):
    model, x = MLP(16, 32, 8, bias=bias).eval(), torch.randn(4, 16)
    before = copy.deepcopy(model.state_dict())
    out, report = graphpress.optimize(model, "fold-linear", example_inputs=(x,), return_report=True)
    record = report.records[0]
    assert type(out) is MLP and isinstance(out.l1, nn.Identity)
    assert out.l2.weight.shape == (8, 16) and out.l2.in_features == 16
    assert record.stats["merged"] == 1 and record.stats["skipped"] == 0
    assert record.stats["parameters_removed"] == 16 * 32 + (32 if bias else 0) + 32 * 8 - 16 * 8
    assert record.stats["flops_saved"] == 2 * 4 * (16 * 32 + 32 * 8 - 16 * 8)
    assert record.flops_after < record.flops_before
    with torch.no_grad():
        assert _rel(out(x), model(x)) <= 1e-5
    assert isinstance(model.l1, nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bottleneck_is_left_and_counted_as_skipped():
    model, x = MLP(64, 8, 64).eval(), torch.randn(4, 64)
    out, report = graphpress.optimize(model, "fold-linear", example_inputs=(x,), return_report=True)
    record = report.records[0]
    assert not record.modified and record.stats == {**record.stats, "merged": 0, "skipped": 1}
    assert isinstance(out.l1, nn.Linear) and out.l1.weight.shape == (8, 64)


def test_onnx_saving_and_non_saving(tmp_path):
    for dims, merged in (((16, 32, 8), 1), ((64, 8, 64), 0)):
        model, x = MLP(*dims).eval(), torch.randn(2, 5, dims[0])
        path = graphpress.export_onnx(model, tmp_path / f"mlp{dims[1]}.onnx", example_inputs=(x,))
        out, report = graphpress.optimize(path, "fold-linear", example_inputs=(x,), return_report=True)
        assert report.records[0].stats["merged"] == merged
        assert report.records[0].stats["skipped"] == 1 - merged
        matmuls = sum(n.op_type in ("MatMul", "Gemm") for n in out.graph.node)
        assert matmuls == 3 - merged
        with torch.no_grad():
            assert _rel(_ort(out, x), model(x)) <= 1e-5


def test_intermediate_read_twice_is_not_merged():
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(8, 32), nn.Linear(32, 4)

        def forward(self, x):
            h = self.l1(x)
            return self.l2(h), h.sum(-1)

    model, x = Branch().eval(), torch.randn(2, 8)
    out, report = graphpress.optimize(model, "fold-linear", example_inputs=(x,), return_report=True)
    assert not report.records[0].modified and isinstance(out.l1, nn.Linear)
