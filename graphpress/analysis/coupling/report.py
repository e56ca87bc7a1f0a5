"""Coupling groups in words (``graphpress inspect MODEL --groups``) and as plain dicts (JSON output).

The text names each group by its weights, says what a unit is (a channel, a block of positions, a KV head
with its query heads), how many units may be pruned, what is frozen and why (naming the node), and the
ops no rule covered.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .analyze import CouplingResult
from .groups import CouplingGroup

__all__ = ["format_groups", "groups_as_dicts"]


def _groups(groups: CouplingResult | Sequence[CouplingGroup]) -> list[CouplingGroup]:
    return list(groups.groups if isinstance(groups, CouplingResult) else groups)


def _member_text(group: CouplingGroup) -> list[str]:
    lines = []
    for m in group.members:
        per_unit = np.bincount(m.unit_of, minlength=group.units)
        spread = f", {per_unit.max()} per unit" if per_unit.max() > 1 else ""
        lines.append(f"      {m.key} axis {m.axis} ({m.positions} positions{spread})")
    return lines


def format_groups(groups: CouplingResult | Sequence[CouplingGroup], *, max_members: int = 12,
                  include_frozen: bool = False) -> str:
    """A readable listing of coupling groups; frozen groups are summarized unless ``include_frozen``."""
    items = _groups(groups)
    lines = []
    shown = [g for g in items if include_frozen or g.prunable]
    hidden = len(items) - len(shown)
    for g in shown:
        unit = "channel" if g.unit_size == 1 else f"block of up to {g.unit_size} positions"
        lines.append(f"group {g.index}: {g.name()}")
        lines.append(f"    {g.units} units ({unit}), {g.prunable_units} prunable, "
                     f"{len(g.members)} weight axes, {g.parameter_count:,} parameters touched")
        for note in g.notes:
            lines.append(f"    note: {note}")
        members = _member_text(g)
        lines += members[:max_members]
        if len(members) > max_members:
            lines.append(f"      ... {len(members) - max_members} more weight axes")
        if g.frozen.any():
            reasons = sorted(set(g.frozen_reasons.values()))
            lines.append(f"    frozen units: {int(g.frozen.sum())} ({'; '.join(reasons[:3])}"
                         f"{'; ...' if len(reasons) > 3 else ''})")
        lines.append("    never empties: at least one unit of every tensor axis it reaches is kept")
    if hidden:
        lines.append(f"{hidden} groups are entirely frozen (model inputs/outputs, kernel windows, vocabularies)"
                     "; pass include_frozen=True to list them")
    if isinstance(groups, CouplingResult) and groups.uncovered:
        lines.append("ops without a coupling rule (their channels are frozen):")
        for name, op in sorted(groups.uncovered.items())[:20]:
            lines.append(f"    {name}: {op}")
    return "\n".join(lines)


def groups_as_dicts(groups: CouplingResult | Sequence[CouplingGroup]) -> list[dict[str, Any]]:
    """JSON-ready description of every group (index maps as lists of unit numbers)."""
    out = []
    for g in _groups(groups):
        out.append({
            "index": g.index,
            "name": g.name(),
            "units": g.units,
            "prunable_units": g.prunable_units,
            "unit_size": g.unit_size,
            "parameters": g.parameter_count,
            "members": [{"key": m.key, "axis": m.axis, "unit_of_position": m.unit_of.tolist()} for m in g.members],
            "frozen_units": np.flatnonzero(g.frozen).tolist(),
            "frozen_reasons": dict(g.frozen_reasons),
            "keep_at_least_one_of": [u.tolist() for u in g.keep_one],
            "notes": list(g.notes),
        })
    return out
