"""``as_strided`` views lower to a gather by a table built from the input's strides (Longformer's and LED's
overlapping attention chunks)."""

from __future__ import annotations

import pytest
import torch

from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.errors import UnsupportedOpError
from graphpress.frontends.torch_export import trace
from graphpress.frontends.torch_rules_strided import read_table


class _Chunks(torch.nn.Module):
    """Half-overlapping chunks as Longformer cuts them, and a strided read of a transposed (non-contiguous) view."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.proj(x).reshape(2, 2, 8, 8)
        size, stride = list(h.size()), list(h.stride())
        size[1], stride[1] = size[1] * 2 - 1, stride[1] // 2
        return h.as_strided(size=size, stride=stride) * 1.5, x.transpose(0, 1).as_strided((4, 2), (1, 8))


def test_overlapping_and_transposed_strided_views_match_torch_in_onnxruntime() -> None:
    x = torch.randn(8, 4, 8, generator=torch.Generator().manual_seed(0))
    model = _Chunks()
    got = run_onnxruntime(to_onnx(trace(model, (x,))), (x,))
    for g, w in zip(got, model(x)):
        assert torch.allclose(torch.as_tensor(g), w, atol=1e-6)


def test_read_table_follows_the_source_strides() -> None:
    source = torch.arange(6.0).reshape(2, 3).t()  # strides (1, 3): row-major index differs from storage position
    table = read_table(source, [6], [1], 0)
    assert torch.equal(source.reshape(-1)[table], torch.arange(6.0).as_strided((6,), (1,)))


def test_a_strided_read_outside_the_input_is_refused() -> None:
    class Outside(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[1:].as_strided((2, 4), (4, 1), 0)  # storage rows before the slice: not elements of its input

    with pytest.raises(UnsupportedOpError, match="outside its input"):
        trace(Outside(), (torch.randn(3, 4),))
