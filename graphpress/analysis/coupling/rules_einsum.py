"""The coupling rule of Einsum: channels follow the equation's index letters.

TensorFlow's exporter (tf2onnx) writes Keras attention and dense layers on 3-D inputs as ``Einsum``
(``"abc,cd->abd"``, ``"aecd,abcd->acbe"``), and JAX and hand-written ONNX graphs use it too.  The equation
says everything a rule needs: every axis that carries one letter holds the same positions, so the axes of
one letter are coupled across operands (a weight's input axis with the activation it contracts, as a
MatMul's K), an output axis takes its letter's ids, and a letter summed away simply carries no ids
afterwards (a sum over channels is recomputed over the channels that remain, as ``ReduceSum``'s is).

A letter repeated inside one operand (a diagonal, ``"ii->i"``) or an equation this parser does not read is
frozen with its reason: pruning gets more timid there, never wrong.
"""

from __future__ import annotations

import numpy as np

from ...ir import Node, Value
from .rules import coupling_rule, freeze_uncovered
from .state import CouplingState

__all__ = ["einsum", "einsum_axes"]


def _expand_ellipsis(term: str, rank: int, ellipsis_rank: int) -> list[str] | None:
    """One operand's index names, ``...`` spelled out as the names ``0, 1, ...`` of the broadcast axes
    (right-aligned across operands, as numpy broadcasts them); None when the term does not fit ``rank``."""
    if "..." not in term:
        letters = list(term)
        return letters if len(letters) == rank else None
    head, tail = term.split("...")
    own = rank - len(head) - len(tail)
    if own < 0:
        return None
    return list(head) + [str(i) for i in range(ellipsis_rank - own, ellipsis_rank)] + list(tail)


def einsum_axes(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]] | None:
    """Index names of each operand's axes and of the output's, or None for an equation this cannot read.

    Implicit outputs (no ``->``) are the letters used exactly once, in alphabetical order, after the
    broadcast axes, as numpy and ONNX define them."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks) or any(t.count("...") > 1 for t in terms + [rhs]):
        return None
    ellipsis_rank = max([r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t], default=0)
    operands = [_expand_ellipsis(t, r, ellipsis_rank) for t, r in zip(terms, ranks)]
    if any(names is None for names in operands):
        return None
    broadcast = [str(i) for i in range(ellipsis_rank)]
    if arrow:
        output = _expand_ellipsis(rhs, len(rhs.replace("...", "")) + ellipsis_rank, ellipsis_rank)
    else:
        letters = [c for t in terms for c in t.replace("...", "")]
        output = broadcast + sorted(c for c in set(letters) if letters.count(c) == 1)
    return operands, output


def _occurrences(state: CouplingState, operands: list[Value], names: list[list[str]]) -> dict[str, list]:
    """For each index name, the ids of every operand axis that carries it (None: a fixed axis), skipping
    broadcast axes of size 1."""
    found: dict[str, list] = {}
    for value, axis_names in zip(operands, names):
        labels = state.get(value)
        for axis, name in enumerate(axis_names):
            if value.shape[axis] != 1:
                found.setdefault(name, []).append(labels[axis])
    return found


@coupling_rule("Einsum")
def einsum(state: CouplingState, node: Node) -> None:
    operands = [v for v in node.inputs if v is not None]
    if any(v.shape is None for v in operands):
        return freeze_uncovered(state, node)
    parsed = einsum_axes(str(node.attrs.get("equation", "")), [len(v.shape) for v in operands])
    if parsed is None:
        return freeze_uncovered(state, node)
    names, output = parsed
    repeated = {n for axis_names in names for n in axis_names if axis_names.count(n) > 1}
    coupled: dict[str, np.ndarray | None] = {}
    for name, ids in _occurrences(state, operands, names).items():
        labeled = [i for i in ids if i is not None]
        if name in repeated:
            for i in labeled:
                state.freeze(i, f"Einsum {node.attrs.get('equation')!r} reads a diagonal", node)
            coupled[name] = None
            continue
        for other in labeled[1:]:
            state.equate(labeled[0], other)
        if labeled and len(labeled) < len(ids):
            state.freeze(labeled[0], "Einsum axis shared with a tensor of fixed width", node)
            coupled[name] = None
        else:
            coupled[name] = labeled[0] if labeled else None
    state.set(node.outputs[0], [coupled.get(name) for name in output])
