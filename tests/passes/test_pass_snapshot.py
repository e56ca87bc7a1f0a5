"""Rollback snapshots (``passes/snapshot.py``): what a host snapshot moves, what it keeps shared, and where
the pass manager and ``optimize`` put them.  On this CPU-only machine "moving to the host" is exercised with a
``movable`` predicate that picks CPU tensors (a CPU-to-CPU copy); the GPU case is in ``test_pass_snapshot_cuda``.
"""

from __future__ import annotations

import pytest
import torch

from graphpress.passes.snapshot import device_tensors, snapshot_on_host, take_snapshot

EVERY_TENSOR = lambda t: True  # noqa: E731


class _Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(8, 4)
        self.head = torch.nn.Linear(4, 8, bias=False)
        self.head.weight = self.embed.weight  # one Parameter in two places, as tied LM heads are
        self.register_buffer("table", torch.arange(6.0))
        self.frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
        self.view_of_table = self.table[2:]  # a plain attribute that shares the buffer's storage


def test_a_host_snapshot_copies_every_owned_tensor_and_keeps_ties():
    model = _Tied()
    snap = take_snapshot(model, on_host=True, movable=EVERY_TENSOR)
    moved_ids = {id(host) for host, _ in snap.moved}
    copy = snap.copy
    assert copy.embed.weight is copy.head.weight and id(copy.embed.weight) in moved_ids
    assert copy.embed.weight is not model.embed.weight
    restored = snap.materialize()
    assert restored.embed.weight is restored.head.weight  # still tied after the trip back
    assert isinstance(restored.frozen, torch.nn.Parameter) and not restored.frozen.requires_grad
    assert "table" in restored._buffers and torch.equal(restored.table, model.table)
    assert restored.embed.weight is not copy.embed.weight  # a fresh copy every time: the snapshot stays usable
    model.embed.weight.data.zero_()
    assert restored.embed.weight.abs().sum() > 0


def test_tensors_that_share_storage_are_copied_together_not_moved_apart():
    model = _Tied()
    found = device_tensors(model, EVERY_TENSOR)
    assert all(t is not model.table and t is not model.view_of_table for t in found)
    restored = take_snapshot(model, on_host=True, movable=EVERY_TENSOR).materialize()
    restored.table[3] = 100.0
    assert restored.view_of_table[1] == 100.0  # the view still looks at its base


def test_the_walk_does_not_enter_python_modules_or_functions():
    tensor = torch.ones(2)
    assert device_tensors({"lib": torch, "fn": torch.nn.functional.relu, "t": [tensor]}, EVERY_TENSOR) == [tensor]


def test_where_snapshots_live():
    model = _Tied()
    assert snapshot_on_host(model, "host") and not snapshot_on_host(model, "device")
    assert not snapshot_on_host(model, "auto")  # nothing on an accelerator
    with pytest.raises(ValueError, match="snapshot place"):
        snapshot_on_host(model, "disk")
    assert take_snapshot(model, on_host=True).moved == []  # CPU tensors are not "moved" by default


@pytest.mark.parametrize("dtype, expected", [(torch.float32, []), (torch.bfloat16, ["fuse-qkv"])])
def test_in_place_runs_copy_the_graph_only_where_the_copy_is_used(monkeypatch, dtype, expected):
    """With ``optimize(inplace=True)`` and host snapshots the caller restores the model itself, so the manager
    copies the graph only before an exact pass on a half-precision model (its float32 judgement needs it)."""
    import graphpress
    from graphpress.passes import manager
    from graphpress.testing.zoo import tiny_case

    taken = []
    original = manager.take_snapshot
    monkeypatch.setattr(manager, "take_snapshot", lambda graph, on_host: taken.append(on_host) or original(graph,
                                                                                                          on_host))
    case = tiny_case("llama")
    model = case.model.to(dtype)
    _, report = graphpress.optimize(model, "fuse-qkv,quantize{bits=4,group=32}", example_inputs=case.inputs,
                                    example_kwargs=case.call_kwargs, inplace=True, snapshots="host",
                                    return_report=True)
    assert [r.name for r in report.records] == ["fuse-qkv", "quantize"]
    assert len(taken) == len(expected) and all(taken)


def test_optimize_refuses_an_unknown_snapshot_place_before_any_work():
    import graphpress
    from graphpress.errors import GraphpressError

    with pytest.raises(GraphpressError, match="snapshots must be one of auto, host, device"):
        graphpress.optimize(torch.nn.Linear(4, 4), "dce", example_inputs=(torch.randn(1, 4),), snapshots="disk")
