"""Coupling rules of elementwise ops: every input axis that broadcasts onto an output axis is coupled.

Residual adds, gates (SwiGLU's ``silu(gate) * up``), norm weights applied as ``Mul`` (RMSNorm after
decomposition), biases, squeeze-excite's ``x * sigmoid(fc(pool(x)))`` and layer scales are all this one
rule: positions that meet in one output element shrink together. A channel axis that meets a tensor of
fixed size (a graph input, a mask) is frozen instead, since that tensor can't shrink with it.
"""

from __future__ import annotations

import numpy as np

from ...ir import Node, Value
from ...ir.ops import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, ELEMENTWISE_VARIADIC
from .rules import coupling_rule
from .state import CouplingState, Labels

__all__ = ["broadcast_labels", "elementwise"]


def broadcast_labels(state: CouplingState, node: Node, inputs: list[Value], out_rank: int) -> Labels:
    """Labels of the broadcast of ``inputs`` (numpy rules, right-aligned), coupling what meets.

    An input of unknown rank (the output of an op no schema describes, in a file that declares no type
    for it) could meet any axis, so every channel of the others is frozen rather than taken for a scalar."""
    out: Labels = [None] * out_rank
    if any(value.shape is None for value in inputs):
        for value in inputs:
            for ids in state.get(value) if value.shape is not None else ():
                if ids is not None:
                    state.freeze(ids, f"channels meet a tensor of unknown shape in {node.qualified_op}", node)
        return out
    for axis in range(out_rank):
        labeled: list[np.ndarray] = []
        fixed = False
        for value in inputs:
            rank = len(value.shape or ())
            in_axis = axis - (out_rank - rank)
            if in_axis < 0:
                continue
            size = value.shape[in_axis]
            if size == 1:
                continue
            ids = state.get(value)[in_axis]
            if ids is None:
                fixed = True
            else:
                labeled.append(ids)
        if not labeled:
            continue
        for other in labeled[1:]:
            state.equate(labeled[0], other)
        if fixed:
            state.freeze(labeled[0], f"channels meet a tensor of fixed size in {node.qualified_op}", node)
        else:
            out[axis] = labeled[0]
    return out


_DATA_INPUTS = {"Clip": 1, "Dropout": 1, "Where": 3}


@coupling_rule(*sorted(ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | ELEMENTWISE_VARIADIC))
def elementwise(state: CouplingState, node: Node) -> None:
    """Clip's min/max and Dropout's ratio are scalars; Where's condition broadcasts like the rest."""
    count = _DATA_INPUTS.get(node.op, len(node.inputs))
    inputs = [v for v in node.inputs[:count] if v is not None]
    out = node.outputs[0]
    state.set(out, broadcast_labels(state, node, inputs, len(out.shape or ())))
    for extra in node.outputs[1:]:  # Dropout's mask
        state.set(extra, list(state.labels[out]) if extra.shape == out.shape else [None] * len(extra.shape or ()))
