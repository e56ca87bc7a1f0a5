"""A FLOPs target for the pruning planner (``prune-channels{flops=...}``).

The FLOPs of a convolution or a linear layer are its weight's element count times a factor the pruning
does not change (output pixels or tokens, two per multiply-add), so the planner's exact parameter count
weighted by that factor per weight is an exact FLOPs count of the layers in scope (as
:func:`graphpress.analysis.flops.count_flops` counts them). FLOPs no group can shrink (attention scores,
layers out of scope) stay in the model's total, so ``flops=0.5`` halves the whole model's FLOPs.
"""

from __future__ import annotations

import math

from ...analysis.coupling import CouplingResult
from ...analysis.flops import count_flops, node_flops
from ...errors import InfeasibleRequestError
from ...ir import Graph
from .allocate import ParameterBudget

__all__ = ["flops_budget"]


def flops_budget(graph: Graph, result: CouplingResult, groups: list[int], fraction: float
                 ) -> tuple[ParameterBudget, float, int]:
    """The FLOPs budget of ``groups``, the FLOPs to remove for ``fraction`` of the model's, and the model's
    FLOPs; refuses a fraction larger than what the groups in scope hold."""
    scale: dict[str, float] = {}
    for gi in groups:
        for m in result.groups[gi].members:
            if m.key in scale or not m.values:
                continue
            value = m.values[0]
            elements = math.prod(value.shape or ()) or 1
            scale[m.key] = sum(node_flops(n) for n in value.consumers()) / elements
    budget = ParameterBudget(result, groups, scale)
    model = count_flops(graph)
    target = fraction * model
    if target >= budget.total:
        raise InfeasibleRequestError(
            f"flops={fraction:g} asks to remove {target:.3g} FLOPs but the groups in scope hold only "
            f"{budget.total:.3g} of the model's {model:.3g} ({budget.total / max(model, 1):.0%}); use a smaller flops")
    return budget, target, model
