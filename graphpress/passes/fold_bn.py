"""``fold-bn``: fold an inference-mode BatchNorm into the Conv, ConvTranspose or Linear before it. Exact.

    W' = W * gamma / sqrt(var + eps)      (per output channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta

On a torch model the convolution's tensors are edited in the user's module and the BatchNorm module is
replaced by ``nn.Identity``, so the class of the model is unchanged.
"""

from __future__ import annotations

import torch

from ..ir import GRAPHPRESS_DOMAIN, Graph, ModuleBinding, Node, Parameter, Value
from .base import Pass, PassResult
from .context import PassContext
from .registry import register_pass

__all__ = ["FoldBatchNorm", "fold_channel_affine"]


def _out_axis(node: Node) -> int | None:
    """The weight axis that indexes output channels, or None when folding would be wrong."""
    if node.op == "Conv" and node.domain == "":
        return 0
    if node.op == "ConvTranspose" and node.domain == "" and node.attrs.get("group", 1) == 1:
        return 1
    if node.op == "Linear" and node.domain == GRAPHPRESS_DOMAIN:
        return 0
    return None


def _scope_is_single_use(graph: Graph, node: Node) -> bool:
    """A module called twice (shared BatchNorm) can't be replaced by Identity for just one call."""
    if graph.origin != "torch" or not node.scope:
        return True
    return sum(1 for n in graph.nodes if n.scope == node.scope and n.op == node.op) == 1


def _bias_value(graph: Graph, producer: Node, like: torch.Tensor, channels: int) -> Value:
    """The producer's bias input, creating a zero bias (bound to the module's ``bias``) when absent."""
    bias = producer.input(2)
    if bias is not None:
        return bias
    zeros = torch.zeros(channels, dtype=like.dtype, device=like.device)
    if graph.origin == "torch" and graph.module is not None and producer.scope:
        binding = ModuleBinding(graph.module, f"{producer.scope}.bias")
        binding.set(zeros)
        value = graph.add_constant(Parameter(binding, kind="parameter"))
    else:
        value = graph.constant(zeros, f"{producer.name}_bias")
        value.param.kind = "parameter"
    while len(producer.inputs) < 2:
        producer.set_inputs(list(producer.inputs) + [None])
    producer.set_inputs(list(producer.inputs[:2]) + [value])
    return value


def fold_channel_affine(graph: Graph, producer: Node, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make ``producer`` compute ``scale * producer(x) + shift`` per output channel, in place."""
    axis = _out_axis(producer)
    weight = producer.input(1).param
    w = weight.data
    shape = [1] * w.dim()
    shape[axis] = -1
    weight.data = (w * scale.to(w.dtype).reshape(shape)).contiguous()
    producer.input(1).sync_from_param()
    bias = _bias_value(graph, producer, w, scale.numel()).param
    bias.data = (bias.data * scale.to(w.dtype) + shift.to(w.dtype)).contiguous()


@register_pass
class FoldBatchNorm(Pass):
    name = "fold-bn"
    summary = "Fold inference-mode BatchNorm into the preceding Conv/ConvTranspose/Linear (exact)."
    exact = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        folded = 0
        for bn in list(graph.nodes):
            if bn.op != "BatchNormalization" or bn.domain != "" or bn.attrs.get("training_mode", 0):
                continue
            if len(bn.outputs) > 1 and any(o.uses for o in bn.outputs[1:]):
                continue
            x = bn.input(0)
            producer = x.producer if x is not None else None
            if producer is None or _out_axis(producer) is None or len(x.uses) != 1 or x in graph.outputs:
                continue
            stats = bn.inputs[1:5]
            w = producer.input(1)
            if any(v is None or v.param is None or v.param.is_meta for v in (*stats, w)):
                continue
            if not (_scope_is_single_use(graph, bn) and _scope_is_single_use(graph, producer)):
                continue
            gamma, beta, mean, var = (v.param.data.double() for v in stats)
            scale = gamma / torch.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
            fold_channel_affine(graph, producer, scale, beta - mean * scale)
            graph.replace_all_uses(bn.outputs[0], x)
            for extra in bn.outputs[1:]:
                extra.uses.clear()
            graph.remove(bn)
            if graph.origin == "torch" and graph.module is not None and bn.scope:
                graph.replace_module(bn.scope, torch.nn.Identity())
            folded += 1
        dropped = graph.prune_unused_constants()
        return PassResult(graph, folded > 0, {"batchnorms_folded": folded, "constants_removed": dropped})
