"""The table of aten -> IR lowering rules, and the decomposition table derived from it.

One registry is the single source of truth for two questions: "how does this aten op become IR?" and
"which ops must ``ep.run_decompositions`` leave alone?". An op with a rule is kept whole (so
``aten.linear`` stays one ``graphpress::Linear`` instead of a ``t`` + ``addmm``); every other op is
decomposed by torch's default table down to core aten, which the rules then cover. Adding a rule for a
high-level op therefore both keeps it and lowers it, and the two can never disagree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    import torch.fx

    from .torch_lowering import LoweringContext

__all__ = ["LoweringRule", "lowers", "rule_for", "decomposition_table", "registered_targets"]

LoweringRule = Callable[["LoweringContext", "torch.fx.Node"], Any]
"""``rule(ctx, fx_node)`` returns the IR value(s) the aten node produces (a Value, a list, or None)."""

_RULES: dict[Any, LoweringRule] = {}

# Modules whose import registers rules; loaded lazily so importing the registry stays cheap and acyclic.
_RULE_MODULES = (
    "graphpress.frontends.torch_rules_nn",
    "graphpress.frontends.torch_rules_attention",
    "graphpress.frontends.torch_rules_activation",
    "graphpress.frontends.torch_rules_shape",
    "graphpress.frontends.torch_rules_math",
    "graphpress.frontends.torch_rules_regions",
    "graphpress.frontends.torch_rules_quant",
    "graphpress.frontends.torch_rules_triton",
    "graphpress.frontends.torch_rules_routing",
    "graphpress.frontends.torch_rules_strided",
    "graphpress.frontends.torch_rules_patches",
)
_loaded = False


def lowers(*targets: Any) -> Callable[[LoweringRule], LoweringRule]:
    """Register the decorated function as the rule for each target.

    A target is an ``OpOverloadPacket`` (``torch.ops.aten.view``: every overload), a single
    ``OpOverload`` (``torch.ops.aten.add.Tensor``) or a Python callable such as ``operator.getitem``.
    """

    def register(rule: LoweringRule) -> LoweringRule:
        for target in targets:
            if target in _RULES:
                raise ValueError(f"two lowering rules for {target}: {_RULES[target].__name__} and {rule.__name__}")
            _RULES[target] = rule
        return rule

    return register


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for module in _RULE_MODULES:
            importlib.import_module(module)
        _loaded = True


def rule_for(target: Any) -> LoweringRule | None:
    """The rule for an fx node's target: an exact overload first, then its packet."""
    _ensure_loaded()
    rule = _RULES.get(target)
    if rule is None and isinstance(target, torch._ops.OpOverload):
        rule = _RULES.get(target.overloadpacket)
    return rule


def registered_targets() -> list[Any]:
    _ensure_loaded()
    return list(_RULES)


def _overloads(target: Any) -> list[torch._ops.OpOverload]:
    if isinstance(target, torch._ops.OpOverload):
        return [target]
    if isinstance(target, torch._ops.OpOverloadPacket):
        return [getattr(target, name) for name in target.overloads()]
    return []


def decomposition_table() -> dict:
    """torch.export's default decompositions minus every op a rule lowers whole."""
    table = torch.export.default_decompositions()
    for target in registered_targets():
        for overload in _overloads(target):
            if overload in table:
                del table[overload]
    return table
