"""Host snapshots on a GPU: rollback without a second copy of the model in device memory.

Runs where CUDA is available (the lent H100: ``GRAPHPRESS_TEST_CUDA=1 python -m pytest tests/passes``).
"""

from __future__ import annotations

import pytest
import torch

import graphpress
from graphpress.errors import PassError
from graphpress.passes.snapshot import take_snapshot
from graphpress.testing.faults import ZeroWeightsThenFail

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _stack() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Linear(2048, 2048) for _ in range(8)]).cuda().eval()


def _model_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_a_host_snapshot_holds_cpu_tensors_and_materializes_on_the_gpu():
    model = _stack()
    snap = take_snapshot(model, on_host=True)
    assert snap.on_host and all(p.device.type == "cpu" for p in snap.copy.parameters())
    back = snap.materialize()
    assert all(p.device.type == "cuda" for p in back.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), back.parameters()))


def _failed_run_peak(model: torch.nn.Module, **options) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with pytest.raises(PassError):
        graphpress.optimize(model, ["dce", ZeroWeightsThenFail()], example_inputs=(torch.randn(1, 2048),), **options)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def test_inplace_rollback_with_host_snapshots_holds_one_model_on_the_gpu():
    model = _stack()
    size = _model_bytes(model)
    reference = [p.detach().clone() for p in model.parameters()]
    host_peak = _failed_run_peak(model, inplace=True, snapshots="host")
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(reference, model.parameters()))  # restored
    device_peak = _failed_run_peak(model, snapshots="device")
    print(f"model {size / 2**20:.0f} MiB; extra GPU memory at peak: host snapshots in place "
          f"{host_peak / 2**20:.0f} MiB, device snapshots on a copy {device_peak / 2**20:.0f} MiB")
    assert host_peak < 0.5 * size  # nothing beyond the model itself (it was already allocated)
    assert device_peak > 1.5 * size  # the working copy and a snapshot
