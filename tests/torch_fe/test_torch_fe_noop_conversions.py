"""A forward that converts a submodule to the dtype it already has (Switch Transformers' router) traces."""

from __future__ import annotations

import torch
from torch import nn

from graphpress.frontends.torch_export import trace
from graphpress.frontends.torch_noop_conversions import _changes_nothing


class _RecastsItsHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.head = self.head.to(torch.float32)  # a no-op on float32 weights, but it swaps parameters
        return self.head(x)


def test_a_conversion_to_the_modules_own_dtype_traces() -> None:
    model, x = _RecastsItsHead().eval(), torch.randn(2, 4)
    graph = trace(model, (x,))
    assert [node.op for node in graph.nodes] == ["Linear"]
    assert model.head.weight.dtype == torch.float32


def test_only_conversions_that_change_nothing_are_skipped() -> None:
    module = _RecastsItsHead()
    assert _changes_nothing(module, torch.float32)  # the int64 buffer is not a float: .to(dtype) leaves it
    assert _changes_nothing(module, "cpu") and _changes_nothing(module, device="cpu", dtype=torch.float32)
    assert not _changes_nothing(module, torch.float16)
    assert not _changes_nothing(module, memory_format=torch.channels_last)
