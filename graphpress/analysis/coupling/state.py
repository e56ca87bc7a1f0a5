"""The working state of the coupling analysis: channel ids on value axes and parameter axes.

Every prunable position (one channel of one axis of one tensor) gets an integer id. Rules (one per op
family) give each node's outputs ids derived from its inputs and record three kinds of facts:

* ``equate(a, b)``: position ``a[i]`` and ``b[i]`` must be removed together (a residual add, a norm weight
  and its input, a Linear's input features and the activation feeding them);
* ``freeze(ids, reason, node)``: these positions may never be removed (they meet a graph input or output, an
  op no rule covers, a fixed constant);
* parameter axes (``param_labels``): which ids index which axis of which weight, so the group builder can
  say "rows 3, 7 of q_proj.weight and columns 3, 7 of o_proj.weight".

An axis with no ids (``None``) is *unlabeled*: its size never changes (batch, sequence, head_dim, an input's
features). Ids are plain numpy arrays, so a rule handles 28,672 MLP channels as cheaply as 4, and the
final union of equal ids (``scipy.sparse.csgraph.connected_components``) is near-linear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...ir import SHAPED_LIKE, Node, Value, storage_binding

__all__ = ["Labels", "ParamAxis", "FrozenRecord", "CouplingState", "tie_key", "layout_perm"]

Labels = list  # list[np.ndarray | None], one entry per axis of a value


@dataclass
class ParamAxis:
    """One axis of one weight that carries channel ids. ``values`` are the IR constants holding it
    (several when a weight is tied, e.g. an embedding table reused as the LM head)."""

    key: str
    axis: int
    ids: np.ndarray
    values: list[Value] = field(default_factory=list)


@dataclass
class FrozenRecord:
    ids: np.ndarray
    reason: str
    node: str


def tie_key(value: Value) -> tuple[int, str]:
    """Identity of the tensor behind a constant: tied weights share one tensor object. A binding that
    presents a stored tensor in another layout (GPT-2's Conv1D, stored [in, out]; an ONNX initializer read
    as is and through a Transpose) is keyed by the stored tensor and the layout, since its ``get()`` builds
    a new view each time; :meth:`CouplingState.param_labels` gives every layout of one tensor the same ids."""
    binding = value.param.binding
    return id(storage_binding(binding).get()), getattr(binding, "layout", "")


def layout_perm(value: Value) -> tuple[int, ...]:
    """Axis i of ``value``'s tensor is axis ``perm[i]`` of the stored tensor (reversed for a transposed
    view; views of views compose)."""
    rank = len(value.param.shape)
    flips, binding = 0, value.param.binding
    while getattr(binding, "stored", None) is not None:
        flips += getattr(binding, "layout", "") == "transposed"
        binding = binding.stored
    return tuple(reversed(range(rank))) if flips % 2 else tuple(range(rank))


class CouplingState:
    """Accumulates labels, equalities, freezes and parameter axes while rules walk the graph."""

    def __init__(self) -> None:
        self._next_id = 0
        self.labels: dict[Value, Labels] = {}
        self.edges_a: list[np.ndarray] = []
        self.edges_b: list[np.ndarray] = []
        self.frozen: list[FrozenRecord] = []
        self.seen: list[np.ndarray] = []
        self.param_axes: dict[tuple[tuple[int, str], int], ParamAxis] = {}
        self._param_labels: dict[tuple[int, str], Labels] = {}
        self._stored_labels: dict[int, Labels] = {}  # ids per axis of each stored tensor, in its own layout
        self.node_ids: dict[Node, dict[str, np.ndarray]] = {}
        self.uncovered: dict[str, str] = {}

    # -- ids ---------------------------------------------------------------------------------------
    def fresh(self, n: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        return ids

    @property
    def id_count(self) -> int:
        return self._next_id

    def equate(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
        if a.size:
            self.edges_a.append(a.ravel())
            self.edges_b.append(b.ravel())

    def freeze(self, ids: Optional[np.ndarray], reason: str, node: Node | None) -> None:
        if ids is not None and np.size(ids):
            self.frozen.append(FrozenRecord(np.asarray(ids).ravel(), reason, node.name if node else "graph"))

    def remember(self, node: Node, name: str, ids: np.ndarray) -> None:
        """Keep ids a backend needs to fix an attribute (e.g. a grouped Conv's ``group``) after pruning."""
        self.node_ids.setdefault(node, {})[name] = ids

    # -- values --------------------------------------------------------------------------------------
    def get(self, value: Value | None) -> Labels:
        """Labels of a value; constants get fresh ids on every axis of size > 1 the first time."""
        if value is None:
            return []
        if value in self.labels:
            return self.labels[value]
        rank = len(value.shape or ())
        if value.param is not None and SHAPED_LIKE in value.meta:
            return self._labels_like(value, value.meta[SHAPED_LIKE])
        if value.param is not None and value.param.dtype.is_floating_point:
            return self.param_labels(value)  # weights, buffers and float initializers shrink with their channels
        return [None] * rank

    def _labels_like(self, value: Value, source: Value) -> Labels:
        """A constant the model computes at ``source``'s size (``zeros_like``) has ``source``'s channels, and is
        sliced along them: the model would compute it at the pruned size."""
        labels = list(self.get(source))
        key = tie_key(value)
        for axis, ids in enumerate(labels):
            if ids is not None:
                self.param_axes[(key, axis)] = ParamAxis(value.param.key, axis, ids, [value])
        self.labels[value] = labels
        return labels

    def set(self, value: Value, labels: Labels) -> None:
        rank = len(value.shape or ())
        labels = list(labels) + [None] * (rank - len(labels))
        for axis, ids in enumerate(labels[:rank]):
            size = value.shape[axis]
            if ids is not None and (not isinstance(size, int) or size != len(ids) or size <= 1):
                labels[axis] = None  # a size-1 axis can't shrink; a mismatch means a rule is wrong: be safe
                self.freeze(ids, f"axis {axis} of %{value.name} has no static size matching its channels", None)
            elif ids is not None:
                self.seen.append(ids)
        self.labels[value] = labels[:rank]

    def param_labels(self, value: Value) -> Labels:
        """Ids for every axis of a weight, created on first use.

        Every reader of one stored tensor gets the same ids along each of its axes, whatever constant and
        layout it reads it through (tied weights, a layer shared by several blocks, an initializer read
        by several nodes), so pruning keeps them one tensor instead of slicing a copy per reader. Each
        layout is its own parameter axis (its values hold the tensor in that layout), sharing those ids."""
        key = tie_key(value)
        labels = self._param_labels.get(key)
        if labels is None:
            labels = self._labels_in_layout(value, key[0])
            for axis, ids in enumerate(labels):
                if ids is not None:
                    self.param_axes[(key, axis)] = ParamAxis(value.param.key, axis, ids, [value])
            self._param_labels[key] = labels
        else:
            for axis in range(len(labels)):
                entry = self.param_axes.get((key, axis))
                if entry is not None and value not in entry.values:
                    entry.values.append(value)
        self.labels[value] = labels
        return labels

    def _labels_in_layout(self, value: Value, tensor_id: int) -> Labels:
        """The stored tensor's ids (created on first use) permuted into ``value``'s layout."""
        perm = layout_perm(value)
        shape = value.param.shape
        stored = self._stored_labels.get(tensor_id)
        if stored is None or len(stored) != len(perm):
            stored_shape = [shape[perm.index(axis)] for axis in range(len(perm))]
            stored = [self.fresh(size) if size > 1 else None for size in stored_shape]
            self._stored_labels.setdefault(tensor_id, stored)
        return [stored[perm[axis]] for axis in range(len(perm))]

    def freeze_value(self, value: Value | None, reason: str, node: Node | None) -> None:
        for ids in self.get(value):
            self.freeze(ids, reason, node)

    def freeze_all(self, node: Node, reason: str) -> None:
        """The safe answer for an op no rule understands: nothing touching it changes size."""
        for value in node.inputs:
            if value is not None and (value.dtype is None or value.dtype.is_floating_point):
                self.freeze_value(value, reason, node)
        for out in node.outputs:
            self.set(out, [None] * len(out.shape or ()))
