"""onnxruntime's fused com.microsoft ops through the ONNX frontend and backend: every value behind them is
sized (by the standard stand-ins of graphpress.backends.onnx.shape_proxies) as in the unfused twin, and
the written file keeps the fused ops."""

from __future__ import annotations

import pytest

from graphpress.backends.onnx import to_onnx
from graphpress.frontends.onnx_import import load_onnx
from graphpress.frontends.onnx_reader import OMITTED
from graphpress.testing.onnx_fused import fused_conv_net, fused_transformer_block


def _shapes(graph) -> dict[str, tuple]:
    """Shapes of the node outputs the file names (outputs it omits have none)."""
    return {out.name: out.shape for node in graph.nodes for out in node.outputs if not out.meta.get(OMITTED)}


@pytest.mark.parametrize("build", [fused_transformer_block, lambda: fused_transformer_block(sum_output=True),
                                   fused_conv_net])
def test_fused_outputs_are_sized_like_the_unfused_twin(build):
    fused, unfused, _ = build()
    graph, twin = load_onnx(fused), load_onnx(unfused)
    fused_nodes = [n for n in graph.nodes if n.domain == "com.microsoft"]
    assert fused_nodes and "unknown_ops" in graph.metadata  # the ops stay as they are
    mine, theirs = _shapes(graph), _shapes(twin)
    for node in fused_nodes:
        for out in node.outputs:
            if out.name in theirs:
                assert mine[out.name] == theirs[out.name], out.name
    assert all(shape is not None and all(isinstance(d, int) for d in shape) for shape in mine.values())


def test_skip_layer_norm_statistics_outputs_are_sized():
    fused, _, _ = fused_transformer_block(sum_output=True)
    node = next(n for n in fused.graph.node if n.op_type == "SkipLayerNormalization")
    node.output[1] = "mean"
    graph = load_onnx(fused)
    skip = next(n for n in graph.nodes if n.op == "SkipLayerNormalization")
    assert [o.shape for o in skip.outputs] == [(2, 5, 16), (2, 5, 1), None, (2, 5, 16)]


def test_written_file_keeps_the_fused_ops():
    fused, _, _ = fused_transformer_block()
    written = to_onnx(load_onnx(fused))
    ops = [(n.domain, n.op_type) for n in written.graph.node if n.domain]
    assert ops == [(n.domain, n.op_type) for n in fused.graph.node if n.domain]
