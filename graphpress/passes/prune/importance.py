"""Importance criteria: a score per unit of a coupling group (low scores are pruned first).

Criteria are plugged in with a decorator, so later methods (Wanda-sp, FLAP, CoMe, ...) add themselves
without touching the pruning passes:

    @register_importance("my-score")
    def my_score(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
        ...  # one float per unit of the group

Built in: ``l1`` and ``l2`` (magnitude of every weight slice a unit owns, summed over the group's members),
``taylor`` (first order: sum |w * dL/dw|, gradients of the loss on calibration data, see :mod:`.taylor`)
and ``random`` (seeded; a baseline). The activation-aware criteria ``wanda``, ``flap`` and ``come`` live in
:mod:`.activation_importance`; they declare ``needs_statistics=True`` so the pass gathers per-channel input
statistics block by block before scoring, and ``standardize="group"`` so ``scope=global`` z-scores each
group's scores before ranking them together unless the user picks otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ...analysis.coupling import CouplingGroup, CouplingResult
from ...errors import OptionError
from ...ir import Graph, Value

__all__ = ["ImportanceContext", "register_importance", "get_importance", "list_importance", "position_scores",
           "stored_values", "sum_over_members", "needs_gradients", "needs_statistics", "default_standardize"]


@dataclass
class ImportanceContext:
    """What a criterion may read: the graph (weights via ``member.values[0].param.data``), the coupling
    result, the pass context (calibration data, tokenizer), gradients or per-linear input statistics
    (``{module name: LinearInputStats}``) when the criterion asked for them, and a seeded generator."""

    graph: Graph
    coupling: CouplingResult
    pass_ctx: Any = None
    gradients: dict[str, torch.Tensor] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


ImportanceCriterion = Callable[[ImportanceContext, CouplingGroup], np.ndarray]
_CRITERIA: dict[str, ImportanceCriterion] = {}
_NEEDS_GRADIENTS: set[str] = set()
_NEEDS_STATISTICS: set[str] = set()
_STANDARDIZE: dict[str, str] = {}


def register_importance(name: str, *, needs_gradients: bool = False, needs_statistics: bool = False,
                        standardize: str = "mean") -> Callable[[ImportanceCriterion], ImportanceCriterion]:
    """Decorator: make ``fn(ctx, group) -> scores`` available as ``importance=<name>``.

    ``needs_statistics``: the pass collects calibration input statistics of every linear first
    (``ctx.statistics``). ``standardize``: how ``scope=global`` makes this criterion's scores of different
    groups comparable by default (``mean``, ``group`` or ``kind``; see :func:`.allocate.plan_pruning`)."""

    def register(fn: ImportanceCriterion) -> ImportanceCriterion:
        _CRITERIA[name] = fn
        if needs_gradients:
            _NEEDS_GRADIENTS.add(name)
        if needs_statistics:
            _NEEDS_STATISTICS.add(name)
        _STANDARDIZE[name] = standardize
        return fn

    return register


def get_importance(name: str) -> ImportanceCriterion:
    if name not in _CRITERIA:
        raise OptionError(f"unknown importance criterion {name!r}; registered: {', '.join(list_importance())}")
    return _CRITERIA[name]


def needs_gradients(name: str) -> bool:
    return name in _NEEDS_GRADIENTS


def needs_statistics(name: str) -> bool:
    return name in _NEEDS_STATISTICS


def default_standardize(name: str) -> str:
    """The cross-group normalisation ``scope=global`` uses for this criterion when the user names none."""
    return _STANDARDIZE.get(name, "mean")


def list_importance() -> list[str]:
    return sorted(_CRITERIA)


def position_scores(tensor: torch.Tensor, axis: int, power: int) -> np.ndarray:
    """Sum of |x|^power over every axis but ``axis``: one number per position along it."""
    data = tensor.detach().float().abs()
    if power != 1:
        data = data.pow(power)
    dims = [d for d in range(data.dim()) if d != axis]
    return (data.sum(dim=dims) if dims else data).cpu().numpy().astype(np.float64)


def sum_over_members(group: CouplingGroup, per_member: Callable[[Any], np.ndarray | None]) -> np.ndarray:
    """Add up per-position scores of every member into per-unit scores (an index map is a bincount)."""
    total = np.zeros(group.units, dtype=np.float64)
    for member in group.members:
        scores = per_member(member)
        if scores is not None:
            total += np.bincount(member.unit_of, weights=scores, minlength=group.units)
    return total


_QDQ = ("QuantizeLinear", "DequantizeLinear")


def stored_values(value: Value) -> torch.Tensor | None:
    """What a stored tensor stands for, for ranking channels by magnitude: integer codes that a
    ``DequantizeLinear`` reads (a QDQ file's int8 weights and int32 biases) scaled back to
    ``(q - zero) * scale``, so that they rank on one scale with each other and with float weights; None for
    the scales and zero points themselves (a channel of zero weights has scale 1: no measure of its worth);
    any other tensor as stored."""
    readers = [(node, node.inputs.index(value)) for node in value.consumers()]
    if readers and all(node.op in _QDQ and slot in (1, 2) for node, slot in readers):
        return None
    data = value.param.data
    if data.is_floating_point():
        return data
    for node, slot in readers:
        if node.op != "DequantizeLinear" or slot != 0:
            continue
        scale, zero = node.input(1), node.input(2)
        if scale is None or scale.param is None or (zero is not None and zero.param is None):
            return data
        shape = [1] * data.dim()
        if scale.param.data.numel() > 1 and data.dim():
            shape[int(node.attrs.get("axis", 1)) % data.dim()] = -1
        offset = zero.param.data.float().reshape(shape) if zero is not None else 0.0
        return (data.float() - offset) * scale.param.data.float().reshape(shape)
    return data


def _magnitude(group: CouplingGroup, power: int) -> np.ndarray:
    def member_scores(member):
        if member.values[0].param.is_meta:
            return None
        values = stored_values(member.values[0])
        return None if values is None else position_scores(values, member.axis, power)

    return sum_over_members(group, member_scores)


@register_importance("l1")
def l1(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
    return _magnitude(group, 1)


@register_importance("l2")
def l2(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
    return np.sqrt(_magnitude(group, 2))


@register_importance("random")
def random(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
    return np.random.default_rng(ctx.seed + group.index).random(group.units)


@register_importance("taylor", needs_gradients=True)
def taylor(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
    """First-order Taylor: sum over a unit's weights of |w * dL/dw| (gradients from calibration data)."""

    def member_scores(member):
        grad = ctx.gradients.get(member.key)
        if grad is None:
            return None
        return position_scores(member.values[0].param.data * grad, member.axis, 1)

    return sum_over_members(group, member_scores)
