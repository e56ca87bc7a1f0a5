"""``compensate-bias``: FLAP's bias compensation after structured pruning.

    graphpress.optimize(model, "prune-channels{ratio=0.2,importance=flap,scope=global},compensate-bias",
                        calibration=token_windows)

A removed input channel ``j`` of a linear no longer contributes ``W[:, j] x_j``; replacing ``x_j`` by its
calibration mean keeps the expected output: ``b += W[:, removed] @ mean(X_removed)``. The pruning pass
before it records the removed channels and their dense statistics (:mod:`.removed_inputs`); this pass adds
the bias, creating a bias parameter where the linear had none (on the working copy of the module and in the
IR, so later passes and exporters see it). Hugging Face configs are told through ``mlp_bias`` /
``attention_bias`` by the fix-ups in :mod:`graphpress.backends.hf_fixups`, so ``save_pretrained`` +
``from_pretrained`` (uniform widths) or ``load_pruned`` (any widths) bring the biases back.
"""

from __future__ import annotations

import torch

from ...errors import PassError
from ...ir import GRAPHPRESS_DOMAIN, Graph, ModuleBinding, Node, Parameter
from ..base import Pass, PassResult
from ..context import PassContext
from ..registry import register_pass
from .removed_inputs import RECORDS_KEY

__all__ = ["CompensateBias", "add_to_bias", "linear_node"]


def linear_node(graph: Graph, weight_key: str) -> Node | None:
    """The IR Linear node whose weight is the module parameter ``weight_key``."""
    for node in graph.nodes:
        if node.op == "Linear" and node.domain == GRAPHPRESS_DOMAIN:
            weight = node.input(1)
            if weight is not None and weight.param is not None and weight.param.key == weight_key:
                return node
    return None


def add_to_bias(graph: Graph, weight_key: str, delta: torch.Tensor) -> None:
    """``bias += delta`` for the linear of ``weight_key``; creates the bias (module and IR) if it has none."""
    node = linear_node(graph, weight_key)
    if node is None:
        raise PassError(f"no Linear node reads {weight_key}: the graph changed since it was pruned")
    weight = node.input(1).param.data
    bias = node.input(2)
    if bias is not None and bias.param is not None:
        bias.param.data = (bias.param.data.double() + delta.to(bias.param.data.device)).to(bias.param.dtype)
        bias.sync_from_param()
        return
    if bias is not None:
        raise PassError(f"the bias of {weight_key} is computed at run time; it can't be compensated")
    binding = ModuleBinding(graph.module, weight_key[: -len("weight")] + "bias")
    binding.set(delta.to(device=weight.device, dtype=weight.dtype))
    value = graph.add_constant(Parameter(binding, kind="parameter"), name=binding.key)
    node.set_inputs(list(node.inputs) + [value])


@register_pass
class CompensateBias(Pass):
    name = "compensate-bias"
    summary = ("FLAP bias compensation after prune-channels/prune-heads: add W[:, removed] @ mean(X_removed) to "
               "each pruned linear's bias (created if missing); needs calibration.")
    origins = frozenset({"torch"})
    needs_calibration = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        records = ctx.extras.get(RECORDS_KEY)
        if records is None:
            raise PassError("compensate-bias found no pruning to compensate: put it after prune-channels or "
                            "prune-heads in the same pipeline, with calibration=...")
        done = 0
        largest = 0.0
        for key, record in records.items():
            if record.bias_added is not None:
                continue  # already compensated by an earlier compensate-bias
            delta = record.compensation()
            add_to_bias(graph, key, delta)
            record.bias_added = delta
            done += 1
            largest = max(largest, float(delta.abs().max()))
        return PassResult(graph, done > 0, {"linears": done, "max_bias_change": round(largest, 6)})
