"""Block lists are replayed with each block's own extra arguments where they differ from block 0's; lists that
cannot be replayed block after block are refused with a clear error, up front."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphpress.calibration import run_blockwise
from graphpress.calibration.blocks import check_replayable
from graphpress.errors import GraphpressError


class Stage(nn.Module):
    """A Swin-like stage: takes its own spatial size as an argument, which differs from stage to stage."""

    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Linear(width, width)

    def forward(self, hidden: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.proj(hidden.reshape(hidden.shape[0], size[0] * size[1], -1)) * size[0]


class StagedModel(nn.Module):
    def __init__(self, sizes: tuple[tuple[int, int], ...]):
        super().__init__()
        self.sizes = sizes
        self.layers = nn.ModuleList(Stage(8) for _ in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, size in zip(self.layers, self.sizes):
            x = layer(x, size)
        return x


class Widening(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Linear(width, 2 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class WideningModel(nn.Module):
    """Stages that double the width (ConvNeXt/SegFormer-like): replayable in order, but not a residual stream."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([Widening(4), Widening(8)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def batches(width: int = 8) -> list[dict]:
    return [{"x": torch.randn(2, 4, width)} for _ in range(2)]


def test_per_block_arguments_are_replayed_with_each_blocks_own():
    # Swin-like per-stage sizes, like Gemma's alternating attention masks: replaying block 1 with block 0's
    # arguments would compute something else, silently. Each block must see what it saw in the real forward.
    model = StagedModel(((2, 2), (4, 1))).eval()
    data = batches()
    expected = []
    hook = model.layers[1].register_forward_hook(lambda module, args, out: expected.append(out))
    with torch.no_grad():
        for batch in data:
            model(**batch)
    hook.remove()
    got = []
    run_blockwise(model, data, callback=lambda context: got.extend(context.run()) if context.index == 1 else None)
    assert len(got) == 2 and all(torch.allclose(a, b) for a, b in zip(got, expected))


def test_layers_with_their_own_arguments_are_not_interchangeable_for_depth_passes():
    model = StagedModel(((2, 2), (4, 1))).eval()
    with pytest.raises(GraphpressError, match="receives other extra arguments than block 0"):
        check_replayable(model, "layers", model.layers, batches()[0], shape_preserving=True)
    assert check_replayable(model, "layers", model.layers, batches()[0]) is True
    uniform = StagedModel(((2, 2), (2, 2))).eval()
    assert check_replayable(uniform, "layers", uniform.layers, batches()[0], shape_preserving=True) is False


def test_uniform_arguments_replay():
    model = StagedModel(((2, 2), (2, 2)))
    stats = run_blockwise(model, batches())
    assert set(stats) == {"layers.0.proj", "layers.1.proj"}


def test_shape_changing_stages_calibrate_but_are_not_a_residual_stream():
    model = WideningModel().eval()
    data = batches(width=4)
    assert set(run_blockwise(model, data)) == {"layers.0.proj", "layers.1.proj"}
    with pytest.raises(GraphpressError, match="changes the shape of the hidden states"):
        check_replayable(model, "layers", model.layers, data[0], shape_preserving=True)
