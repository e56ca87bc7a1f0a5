"""``fold-linear``: merge ``Linear2(Linear1(x))`` with nothing between into one Linear, when it is smaller. Exact.

    W = W2 @ W1        b = W2 @ b1 + b2        (computed in float64)

Two linear maps in a row are one linear map, but not always a cheaper one: ``Linear(in -> mid -> out)``
costs ``in*mid + mid*out`` multiply-adds per token and the merged ``in*out``. A low-rank bottleneck
(mid much smaller than in and out, e.g. a LoRA-style factorization) is *cheaper* unmerged, so the pass
merges only when ``in*out < in*mid + mid*out`` and reports the other pairs as skipped.

The first Linear's result must be read by the second alone. On a torch model the second Linear takes the
merged weights and the first module becomes ``nn.Identity`` (the model keeps its class); on ONNX the first
node goes away and the second keeps its output name.
"""

from __future__ import annotations

import torch

from ..ir import Graph, Node
from .base import Pass, PassResult
from .context import PassContext
from .fold_bn import _bias_value
from .linear_edits import TensorOwners, is_linear, linear_is_editable
from .registry import register_pass

__all__ = ["FoldLinear", "linear_chain_saves"]


def linear_chain_saves(in_features: int, mid: int, out_features: int) -> bool:
    """Whether merging ``in -> mid -> out`` into ``in -> out`` lowers multiply-adds (and weights)."""
    return in_features * out_features < in_features * mid + mid * out_features


def _merge(graph: Graph, first: Node, second: Node) -> None:
    """``second`` computes ``second(first(x))`` from x; ``first`` is removed (an Identity on torch)."""
    w1, w2 = first.input(1).param.data, second.input(1).param.data
    b1, b2 = first.input(2), second.input(2)
    w1d, w2d = w1.double(), w2.double()
    merged_bias = None
    if b1 is not None:
        merged_bias = w2d @ b1.param.data.double()
    if b2 is not None:
        merged_bias = b2.param.data.double() if merged_bias is None else merged_bias + b2.param.data.double()
    second.input(1).param.data = (w2d @ w1d).to(w2.dtype).contiguous()
    second.input(1).sync_from_param()
    if merged_bias is not None:
        bias = _bias_value(graph, second, w2, w2.shape[0]).param
        bias.data = merged_bias.to(w2.dtype).contiguous()
    second.set_input(0, first.input(0))
    graph.remove(first)
    if graph.origin == "torch" and graph.module is not None:
        graph.replace_module(first.scope, torch.nn.Identity())


@register_pass
class FoldLinear(Pass):
    name = "fold-linear"
    summary = "Merge Linear -> Linear with nothing between into one Linear where that lowers FLOPs and weights."
    exact = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        owners = TensorOwners(graph)
        params_before, nodes_before = graph.parameter_count(), len(graph.nodes)
        merged = skipped = flops_saved = 0
        for second in list(graph.nodes):
            if second.graph is not graph or not is_linear(second):
                continue
            x = second.input(0)
            first = x.producer if x is not None else None
            if first is None or not is_linear(first) or len(x.uses) != 1 or x in graph.outputs:
                continue
            if not (linear_is_editable(graph, first, owners) and linear_is_editable(graph, second, owners)):
                skipped += 1
                continue
            w1, w2 = first.input(1).param.data, second.input(1).param.data
            (mid, fan_in), out = w1.shape, w2.shape[0]
            if w2.shape[1] != mid or w1.dtype != w2.dtype or not linear_chain_saves(fan_in, mid, out):
                skipped += 1
                continue
            tokens = 1
            for d in (x.shape or ())[:-1]:
                tokens *= d if isinstance(d, int) else 1
            flops_saved += 2 * tokens * (fan_in * mid + mid * out - fan_in * out)
            _merge(graph, first, second)
            merged += 1
        graph.prune_unused_constants()
        stats = {"merged": merged, "skipped": skipped, "nodes_removed": nodes_before - len(graph.nodes),
                 "parameters_removed": params_before - graph.parameter_count(), "flops_saved": flops_saved}
        return PassResult(graph, merged > 0, stats)
