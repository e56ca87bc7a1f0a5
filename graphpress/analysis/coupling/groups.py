"""Coupling groups: what the analysis hands to pruning passes and to ``graphpress inspect --groups``.

A *unit* is a set of positions that must be removed together (one channel of the residual stream in every
weight that reads or writes it; one KV head with its query group). A *group* is a set of units that live in
the same weights, so they compete for the same budget. Each member says which weight axis it touches and,
for every position along that axis, which unit owns it (its index map).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir import ModuleBinding, Value, storage_binding

__all__ = ["GroupMember", "CouplingGroup"]


@dataclass
class GroupMember:
    """Axis ``axis`` of weight ``key``: position i belongs to unit ``unit_of[i]`` of its group."""

    key: str
    axis: int
    unit_of: np.ndarray
    values: list[Value] = field(default_factory=list, repr=False)

    @property
    def positions(self) -> int:
        return int(self.unit_of.size)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values[0].param.shape) if self.values else ()

    @property
    def of_model(self) -> bool:
        """Whether the weight is a tensor of the user's module (not a constant the graph made, such as the
        zeros of ``x[a:b].zero_()``, named after the node that made it)."""
        return bool(self.values) and isinstance(storage_binding(self.values[0].param.binding), ModuleBinding)


@dataclass
class CouplingGroup:
    """Units that shrink together, their members, and what they may never lose.

    ``frozen[u]`` marks units that must stay (``frozen_reasons`` says why, naming the node);
    ``keep_one`` lists unit sets of which at least one must survive (every tensor axis the group reaches:
    no weight, activation or Concat branch is ever pruned to zero width); ``notes`` holds structural facts
    for the report (GQA ratio, grouped convolutions, rounding applied).
    """

    index: int
    classes: np.ndarray
    members: list[GroupMember]
    frozen: np.ndarray
    frozen_reasons: dict[str, str]
    keep_one: list[np.ndarray]
    notes: list[str] = field(default_factory=list)

    @property
    def units(self) -> int:
        return int(self.classes.size)

    @property
    def named_members(self) -> list[GroupMember]:
        """The members that name the group: the module's own tensors, or every member when none is (an ONNX
        graph's initializers). A graph-made constant's name says nothing about where it lives, and its numbered
        suffix would tell apart groups of repeated blocks that are the same code."""
        return [m for m in self.members if m.of_model] or self.members

    @property
    def prunable_units(self) -> int:
        return int((~self.frozen).sum())

    @property
    def prunable(self) -> bool:
        return self.prunable_units > 0 and self.units > 1

    @property
    def unit_size(self) -> int:
        """Positions per unit in the member where units are largest (1 for plain channels)."""
        sizes = [np.bincount(m.unit_of, minlength=self.units).max() for m in self.members if m.positions]
        return int(max(sizes, default=1))

    @property
    def parameter_count(self) -> int:
        """Elements of the weights this group touches (each weight counted once)."""
        seen: dict[str, int] = {}
        for m in self.members:
            seen[m.key] = int(np.prod(m.shape)) if m.shape else 0
        return sum(seen.values())

    def name(self) -> str:
        """A short readable name: the common module prefix and the members' tails."""
        keys = [f"{m.key}[{m.axis}]" for m in self.named_members]
        if not keys:
            return f"group {self.index}"
        parts = [k.split(".") for k in keys]
        common = []
        for tokens in zip(*parts):
            if len(set(tokens)) != 1:
                break
            common.append(tokens[0])
        prefix = ".".join(common)
        if len(keys) == 1:
            return keys[0]
        tails = sorted({".".join(p[len(common):]) for p in parts})
        shown = ", ".join(tails[:4]) + (f", +{len(tails) - 4} more" if len(tails) > 4 else "")
        return f"{prefix + ': ' if prefix else ''}{shown}"
