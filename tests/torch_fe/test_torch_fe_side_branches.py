"""Branches the eager forward runs but no output reads stay in the graph as side outputs.

UperNet's auxiliary head (its logits feed only the training loss) and the final LayerNorm of DPT's and Swin's
backbones (the task heads read earlier hidden states) are computed at inference and thrown away. The lowering
and torch's decomposition dropped them as dead code, so pruning left their weights at the old width and the
user's forward, which still runs them, failed (benchmarks/arch_sweep.py, upernet, dpt, grounding_dino)."""

from __future__ import annotations

import os

import onnx
import pytest
import torch
from torch import nn

import graphpress
from graphpress.frontends.torch_export import trace
from graphpress.ir import SIDE_OUTPUT, verify
from graphpress.passes.cleanup import eliminate_dead_code


class AuxiliaryHead(nn.Module):
    """A segmentation-style model: its auxiliary head runs at inference, its result is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)
        self.auxiliary = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = torch.relu(self.stem(x))
        logits = self.head(features)
        auxiliary = self.auxiliary(features)
        unused = features.unsqueeze(0)  # a dead end with no weight: still dropped  # noqa: F841
        if labels is not None:  # training only
            logits = logits + 0 * auxiliary.sum()
        return logits


def _side_values(graph) -> list:
    return [out for node in graph.nodes for out in node.outputs if out.meta.get(SIDE_OUTPUT)]


@pytest.mark.parametrize("decompose", [None, True])
def test_a_discarded_branch_with_weights_is_kept_as_a_side_output(decompose) -> None:
    graph = trace(AuxiliaryHead().eval(), (torch.randn(1, 3, 8, 8),), decompose=decompose)
    verify(graph)
    assert graph.metadata["output_names"] == ["output"] and len(graph.outputs) == 1
    side = _side_values(graph)
    assert [tuple(v.shape) for v in side] == [(1, 4, 8, 8)]
    read = {c.param.key for c in graph.parameters() if c.uses}
    assert {"auxiliary.0.weight", "auxiliary.2.weight"} <= read
    assert not any(node.op == "Unsqueeze" for node in graph.nodes)  # the weightless dead end is gone
    assert eliminate_dead_code(graph) == 0  # the side branch is not dead code


def test_onnx_leaves_the_side_branch_out(tmp_path) -> None:
    model = AuxiliaryHead().eval()
    x = torch.randn(1, 3, 8, 8)
    path = graphpress.export_onnx(model, os.path.join(tmp_path, "model.onnx"), (x,))
    proto = onnx.load(path)
    names = {init.name for init in proto.graph.initializer}
    assert not any("auxiliary" in name for name in names)
    assert len(proto.graph.output) == 1
