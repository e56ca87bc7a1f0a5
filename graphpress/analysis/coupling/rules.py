"""The registry of coupling rules: one function per op family, looked up by (domain, op).

A rule reads the labels of a node's inputs from the :class:`~.state.CouplingState`, records equalities,
freezes and parameter axes, and sets the labels of the node's outputs. Adding support for an op is one
decorated function; an op with no rule is handled by :func:`freeze_uncovered`, which freezes every
channel touching it and names the node in the report, so an unknown op can make pruning more timid but
never wrong.
"""

from __future__ import annotations

import importlib
from typing import Callable

from ...ir import Node
from .state import CouplingState

__all__ = ["CouplingRule", "coupling_rule", "rule_for", "freeze_uncovered", "const_ints"]

CouplingRule = Callable[[CouplingState, Node], None]

_RULES: dict[tuple[str, str], CouplingRule] = {}
_RULE_MODULES = (
    "graphpress.analysis.coupling.rules_elementwise",
    "graphpress.analysis.coupling.rules_layers",
    "graphpress.analysis.coupling.rules_norms",
    "graphpress.analysis.coupling.rules_shape",
    "graphpress.analysis.coupling.rules_slicing",
    "graphpress.analysis.coupling.rules_reduce",
    "graphpress.analysis.coupling.rules_attention",
    "graphpress.analysis.coupling.rules_runtime_fused",
    "graphpress.analysis.coupling.rules_einsum",
    "graphpress.analysis.coupling.rules_quantized",
)
_loaded = False


def coupling_rule(*ops: str, domain: str = "") -> Callable[[CouplingRule], CouplingRule]:
    """Register the decorated function as the coupling rule of each op (in ``domain``)."""

    def register(rule: CouplingRule) -> CouplingRule:
        for op in ops:
            _RULES[(domain, op)] = rule
        return rule

    return register


def rule_for(node: Node) -> CouplingRule:
    global _loaded
    if not _loaded:
        for module in _RULE_MODULES:
            importlib.import_module(module)
        _loaded = True
    return _RULES.get((node.domain, node.op), freeze_uncovered)


def freeze_uncovered(state: CouplingState, node: Node) -> None:
    """No rule knows this op: freeze every channel that flows into it and leave its outputs fixed."""
    state.uncovered[node.name] = node.qualified_op
    state.freeze_all(node, f"op {node.qualified_op} has no coupling rule")


def const_ints(node: Node, index: int, attr: str | None = None) -> list[int] | None:
    """An integer list given as a constant input (opset 13+) or, for older graphs, as an attribute."""
    value = node.input(index)
    if value is not None:
        if value.param is None:
            return None
        return [int(v) for v in value.param.data.reshape(-1).tolist()]
    if attr is not None and attr in node.attrs:
        raw = node.attrs[attr]
        return [int(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
    return None

