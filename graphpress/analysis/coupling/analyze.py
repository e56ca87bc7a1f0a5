"""Build coupling groups for a graph: run the per-op rules, union equal ids, collect groups.

``analyze_coupling(graph)`` is cached on the graph (``graph.analyses["coupling"]``). The cost is one pass
over the nodes (each rule does numpy work proportional to the channels it touches) plus two sparse
connected-components runs, so it stays near-linear in model size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ...ir import EvaluatedBinding, Graph
from ..cache import cached_analysis
from .groups import CouplingGroup, GroupMember
from .rules import freeze_uncovered, rule_for
from .side_outputs import freeze_private_side_outputs
from .state import CouplingState

__all__ = ["CouplingResult", "analyze_coupling", "compute_coupling"]


@dataclass
class CouplingResult:
    """Groups plus what a backend needs to apply a decision: the class of every id and the labels of
    every value (``state.labels``), so new shapes, Split sizes, Slice bounds and ``group`` attributes
    follow from the kept units."""

    graph_name: str
    groups: list[CouplingGroup]
    state: CouplingState
    class_of_id: np.ndarray
    group_of_class: np.ndarray
    unit_of_class: np.ndarray
    uncovered: dict[str, str] = field(default_factory=dict)

    def keep_ids(self, keep_units: dict[int, np.ndarray]) -> np.ndarray:
        """Per-id keep mask from per-group unit keep masks (groups not given keep everything)."""
        keep_class = np.ones(self.group_of_class.size, dtype=bool)
        for index, mask in keep_units.items():
            keep_class[self.groups[index].classes] = mask
        return keep_class[self.class_of_id]


def _components(n: int, a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.concatenate(a) if a else np.zeros(0, dtype=np.int64)
    cols = np.concatenate(b) if b else np.zeros(0, dtype=np.int64)
    matrix = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n)).tocsr()
    return connected_components(matrix, directed=False)[1].astype(np.int64)


def _freeze_evaluated(graph: Graph, state: CouplingState) -> None:
    """Tensors computed once from the model's weights (an op without an IR form on the way, as in torch's
    orthogonal parametrization, or folded by fold-constants) keep their size: the model recomputes them
    from weights the graph no longer reads, so their channels can't be followed into the model. Each is
    named like an op without a rule, so the pass's warning and the report say why."""
    for value in graph.constants:
        binding = value.param.binding if value.param is not None else None
        if isinstance(binding, EvaluatedBinding):
            why = (f"computed once from {', '.join(binding.sources)}, which the model recomputes in forward: "
                   f"its channels can't be followed")
            state.uncovered[value.name] = f"{binding.op} ({why})"
            state.freeze_value(value, f"%{value.name} {why}", None)


def _run_rules(graph: Graph) -> CouplingState:
    state = CouplingState()
    _freeze_evaluated(graph, state)
    for node in graph.nodes:
        try:
            rule_for(node)(state, node)
        except Exception as exc:  # noqa: BLE001 - a rule that can't follow a node freezes it instead
            freeze_uncovered(state, node)
            state.uncovered[node.name] = f"{node.qualified_op} (rule failed: {type(exc).__name__}: {exc})"
        for out in node.outputs:
            if out not in state.labels:
                state.set(out, [None] * len(out.shape or ()))
    for value in graph.outputs:
        state.freeze_value(value, "model output (its shape must not change)", None)
    return state


def _frozen_classes(state: CouplingState, class_of_id: np.ndarray, n_classes: int) -> tuple[np.ndarray, dict]:
    frozen = np.zeros(n_classes, dtype=bool)
    reasons: dict[int, str] = {}
    for record in state.frozen:
        classes = class_of_id[record.ids]
        fresh = np.unique(classes[~frozen[classes]])
        frozen[classes] = True
        for c in fresh[:64].tolist():
            reasons[c] = f"{record.reason} ({record.node})"
    seen = np.zeros(n_classes, dtype=bool)
    if state.seen:
        seen[class_of_id[np.concatenate(state.seen)]] = True
    never = ~seen & ~frozen
    for c in np.flatnonzero(never)[:64].tolist():
        reasons[c] = "never flows through the graph"
    frozen |= ~seen
    return frozen, reasons


def _gqa_notes(state: CouplingState, class_of_id: np.ndarray, group_of_class: np.ndarray) -> dict[int, list[str]]:
    notes: dict[int, list[str]] = {}
    for node, named in state.node_ids.items():
        for name, ids in named.items():
            group = int(group_of_class[class_of_id[ids[0]]])
            if name == "q_heads":
                per_unit = np.bincount(class_of_id[ids]).max()
                kv = int(node.input(1).shape[1])
                text = (f"unit = {per_unit} query head(s) of head_dim {node.input(0).shape[3]} with their K/V "
                        f"head ({ids.size} q / {kv} kv heads in {node.scope or node.name}); GQA ratio kept")
            else:
                text = f"{node.op} {name} = number of kept units ({node.scope or node.name})"
            if text not in notes.setdefault(group, []) and len(notes[group]) < 4:
                notes[group].append(text)
    return notes


def compute_coupling(graph: Graph) -> CouplingResult:
    """Run the analysis without the cache (see :func:`analyze_coupling`)."""
    state = _run_rules(graph)
    class_of_id = _components(state.id_count, state.edges_a, state.edges_b)
    n_classes = int(class_of_id.max()) + 1 if class_of_id.size else 0
    freeze_private_side_outputs(graph, state, class_of_id)
    frozen, reasons = _frozen_classes(state, class_of_id, n_classes)
    axes = list(state.param_axes.values())
    member_classes = [class_of_id[axis.ids] for axis in axes]
    group_of_class = _components(
        n_classes, [np.full(c.size, c[0]) for c in member_classes], member_classes)
    in_member = np.zeros(n_classes, dtype=bool)
    for c in member_classes:
        in_member[c] = True
    by_group: dict[int, list[int]] = {}
    for index, c in enumerate(member_classes):
        by_group.setdefault(int(group_of_class[c[0]]), []).append(index)
    unit_of_class = np.full(n_classes, -1, dtype=np.int64)
    notes = _gqa_notes(state, class_of_id, group_of_class)
    groups: list[CouplingGroup] = []
    for raw_group, member_indices in sorted(by_group.items()):
        classes = np.unique(np.concatenate([member_classes[i] for i in member_indices]))
        unit_of_class[classes] = np.arange(classes.size)
        members = [GroupMember(axes[i].key, axes[i].axis, unit_of_class[member_classes[i]], axes[i].values)
                   for i in member_indices]
        group_frozen = frozen[classes]
        frozen_units = np.flatnonzero(group_frozen)[:64]  # the report shows a few reasons, not thousands
        why = {f"unit {u}": reasons[int(classes[u])] for u in frozen_units.tolist() if int(classes[u]) in reasons}
        groups.append(CouplingGroup(len(groups), classes, members, group_frozen, why, [],
                                    notes.get(raw_group, [])))
    _attach_keep_one(state, class_of_id, group_of_class, unit_of_class, by_group, groups)
    # renumber group_of_class to list indices
    remap = np.full(n_classes, -1, dtype=np.int64)
    for g in groups:
        remap[g.classes] = g.index
    return CouplingResult(graph.name, groups, state, class_of_id, remap, unit_of_class, dict(state.uncovered))


def _attach_keep_one(state, class_of_id, group_of_class, unit_of_class, by_group, groups) -> None:
    """Every labeled tensor axis (activations and weights) must keep at least one position.

    Only axes that reach part of a group matter (an axis holding every unit can't be emptied while the
    group keeps one); presence is marked with boolean scatter, which is linear, not a sort. One axis can hold
    units of several groups (a Concat of convolutions with different kernels, as CoaT's per-head position
    encodings): it can be emptied only if every one of them empties it, so a group whose units cover only
    part of it must keep one of those."""
    index_of_raw = {raw: i for i, raw in enumerate(sorted(by_group))}
    seen: set[tuple[int, bytes]] = set()
    arrays = {id(a): a for a in list(state.seen) + [a.ids for a in state.param_axes.values()]}
    for ids in arrays.values():
        classes = class_of_id[ids]
        raws = group_of_class[classes]
        for raw in np.unique(raws).tolist() if (raws != raws[0]).any() else [int(raws[0])]:
            if raw not in index_of_raw:
                continue
            group = groups[index_of_raw[raw]]
            present = np.zeros(group.units, dtype=bool)
            present[unit_of_class[classes[raws == raw]]] = True
            if present.all():
                continue
            units = np.flatnonzero(present)
            key = (raw, units.tobytes())
            if key not in seen:
                seen.add(key)
                group.keep_one.append(units)


def analyze_coupling(graph: Graph) -> CouplingResult:
    """The coupling groups of ``graph``, computed once and cached until a pass changes the graph."""
    return cached_analysis(graph, "coupling", compute_coupling)


