"""Shared legality checks and small graph edits of the exact merge passes (fold-affine, fold-linear, fuse-*).

Every check answers one question a merge must ask before it rewrites a weight: may this tensor be changed
without changing anything else? A weight read by two nodes (tied embeddings, a module called twice) or a
module that torch runs in more than one place may not, so the passes skip it and count it as skipped.
"""

from __future__ import annotations

from collections import Counter

import torch

from ..ir import GRAPHPRESS_DOMAIN, Graph, ModuleBinding, Node, Value, storage_binding

__all__ = ["TensorOwners", "is_linear", "linear_is_editable", "constant_is_exclusive", "module_at",
           "scope_calls", "keep_output_name"]


def is_linear(node: Node) -> bool:
    """A float ``graphpress::Linear`` node."""
    return node.op == "Linear" and node.domain == GRAPHPRESS_DOMAIN


class TensorOwners:
    """How many attributes of the torch module hold each tensor object (tied weights count twice), and
    how many nodes read each stored tensor of the graph (an initializer read by several nodes).

    Built once per pass call: walking ``named_parameters`` for every candidate would be quadratic.
    """

    def __init__(self, graph: Graph):
        self.counts: Counter[int] = Counter()
        self.readers = graph.storage_readers()  # nodes reading each stored tensor, through any constant or view
        if graph.origin == "torch" and graph.module is not None:
            for _, t in graph.module.named_parameters(remove_duplicate=False):
                self.counts[id(t)] += 1
            for _, t in graph.module.named_buffers(remove_duplicate=False):
                self.counts[id(t)] += 1

    def shared(self, tensor: torch.Tensor) -> bool:
        return self.counts.get(id(tensor), 0) > 1


def module_at(graph: Graph, path: str) -> torch.nn.Module | None:
    """The submodule of a torch-origin graph at ``path`` (None on ONNX graphs or a missing path)."""
    if graph.origin != "torch" or graph.module is None or not path:
        return None
    try:
        return graph.module.get_submodule(path)
    except AttributeError:
        return None


def scope_calls(graph: Graph, scope: str, op: str) -> int:
    """How many ``op`` nodes came from the module at ``scope`` (more than one: the module runs twice)."""
    return sum(1 for n in graph.nodes if n.scope == scope and n.op == op)


def constant_is_exclusive(graph: Graph, value: Value | None, owners: TensorOwners) -> bool:
    """A constant with data that only one node reads and no other module attribute holds."""
    if value is None or value.param is None or value.param.is_meta or len(value.uses) != 1:
        return False
    if owners.readers.get(id(storage_binding(value.param.binding)), 0) > 1:
        return False  # an ONNX initializer also read by other nodes (their constants view the same tensor)
    return not (graph.origin == "torch" and owners.shared(value.param.data))


def linear_is_editable(graph: Graph, node: Node, owners: TensorOwners) -> bool:
    """A Linear whose weight (and bias) may be rewritten, and on torch replaced as a whole ``nn.Linear``.

    On a torch model the node must be the only call of a plain ``nn.Linear`` whose tensors are bound by
    their own names, so that editing or swapping the module changes exactly this node.
    """
    if not is_linear(node):
        return False
    weight, bias = node.input(1), node.input(2)
    if not constant_is_exclusive(graph, weight, owners) or weight.param.data.dim() != 2:
        return False
    if bias is not None and not constant_is_exclusive(graph, bias, owners):
        return False
    if graph.origin != "torch":
        return True
    module = module_at(graph, node.scope)
    if type(module) is not torch.nn.Linear or scope_calls(graph, node.scope, "Linear") != 1:
        return False
    binding = weight.param.binding
    if not isinstance(binding, ModuleBinding) or binding.key != f"{node.scope}.weight":
        return False
    return bias is None or (isinstance(bias.param.binding, ModuleBinding) and bias.param.binding.key == f"{node.scope}.bias")


def keep_output_name(graph: Graph, removed: Value, kept: Value) -> None:
    """After ``replace_all_uses(removed, kept)``: a graph output keeps the name users know it by (ONNX)."""
    if any(v is kept for v in graph.outputs) and removed.name != kept.name:
        kept.name, removed.name = removed.name, kept.name
