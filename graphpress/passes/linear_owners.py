"""Which ``nn.Linear`` module each ``graphpress::Linear`` node of a torch graph computes with.

A node's ``scope`` is the module whose forward ran the product. Usually that is the ``nn.Linear`` itself, but
model code may also read a linear's parameters and call the functional form from a parent module
(torchvision's Swin attention: ``F.linear(x, self.qkv.weight, self.qkv.bias)``), and then the scope is the
parent. The weight's parameter binding still names its owner (``features.1.0.attn.qkv.weight``), so a pass that
swaps linear modules (``quantize``) can follow both kinds of call.

Swapping a module is only safe when the graph reads its weight as a linear layer's weight and nothing else:
a weight also read transposed (``x @ linear.weight``), sliced, or by any other op would have to stay a float
tensor there. Such modules are reported with the first read that rules them out, so a pass can say why it
left them alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..ir import Graph, ModuleBinding, Node, Value, storage_binding
from ..quantization.swap import select_linears
from .linear_edits import is_linear

__all__ = ["LinearOwners", "linear_owners"]


@dataclass
class LinearOwners:
    """``nodes``: each Linear node with the module name it computes with; ``kept``: linear modules whose weight
    the graph also reads some other way (module name -> how), which must keep their float weight."""

    nodes: list[tuple[Node, str]] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def swappable(self) -> list[str]:
        """Module names, sorted, that may be swapped: every graph read of their weight is a Linear's."""
        return sorted({name for _, name in self.nodes if name not in self.kept})


def _stored_weight_owner(value: Value | None) -> str | None:
    """The path of the module whose ``weight`` attribute ``value`` is, read as stored (not a transposed view)."""
    binding = value.param.binding if value is not None and value.param is not None else None
    if not isinstance(binding, ModuleBinding) or storage_binding(binding) is not binding:
        return None
    return binding.path if binding.attr == "weight" and binding.path else None


def _owner(node: Node, linears: dict[str, nn.Module]) -> str | None:
    """The linear module ``node`` computes with: its scope when that is a linear (the module was called), else
    the module owning the weight it reads (a functional call from elsewhere), else None."""
    if node.scope and node.scope in linears:
        return node.scope
    owner = _stored_weight_owner(node.input(1))
    return owner if owner in linears else None


def _other_read(graph: Graph, value: Value) -> str | None:
    """How the graph reads the weight ``value`` other than as a Linear's stored ``[out, in]`` weight, or None."""
    transposed = storage_binding(value.param.binding) is not value.param.binding
    for node, index in value.uses:
        if is_linear(node) and index == 1 and not transposed:
            continue
        where = f" in {node.scope}" if node.scope else ""
        if transposed:
            return f"read transposed, as in x @ weight{where}"
        return f"read by {node.op}{where}"
    return "returned as a graph output" if value in graph.outputs else None


def _kept_float(graph: Graph, linears: dict[str, nn.Module]) -> dict[str, str]:
    """Linear modules whose weight the graph reads other than as a Linear's weight, with the first such read."""
    kept: dict[str, str] = {}
    for value in graph.constants:
        stored = storage_binding(value.param.binding) if value.param is not None else None
        if not isinstance(stored, ModuleBinding) or stored.attr != "weight" or stored.path not in linears:
            continue
        why = _other_read(graph, value)
        if why is not None:
            kept.setdefault(stored.path, why)
    return kept


def linear_owners(graph: Graph) -> LinearOwners:
    """The Linear nodes of a torch ``graph`` with the ``nn.Linear`` (or fused linear) module each one computes
    with, and the linear modules that must stay float because their weight is read some other way too."""
    linears = select_linears(graph.module)  # every plain linear; the caller's ignore globs apply later
    result = LinearOwners(kept=_kept_float(graph, linears))
    for node in graph.nodes:
        owner = _owner(node, linears) if is_linear(node) else None
        if owner is not None:
            result.nodes.append((node, owner))
    return result
