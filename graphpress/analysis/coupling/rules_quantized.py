"""Coupling rules of QuantizeLinear and DequantizeLinear: a QDQ-quantized file prunes like its float twin.

onnxruntime's static quantization (QDQ format, the one it recommends), TensorRT's and NNCF's quantization-aware
exports write every quantized weight as an integer initializer read through ``DequantizeLinear`` and every
quantized activation as a ``QuantizeLinear -> DequantizeLinear`` pair.  Both are elementwise maps: channels
pass through them unchanged.  What makes them more than elementwise is the scale and zero point, which are
either scalars (per tensor: nothing to couple) or vectors along the ``axis`` attribute (per channel: one
scale per channel, sliced with it).  The integer weight gets channel ids like a float one, so the pruning
slices the int8 codes, their scales and zero points together and the layer reading the dequantized weight
couples it as a stored weight.  Blocked quantization (opset 21 ``block_size``) keeps its axis whole.
"""

from __future__ import annotations

import math

from ...ir import Node, Value
from .rules import coupling_rule
from .state import CouplingState, Labels

__all__ = ["quantize_linear"]


def _labels(state: CouplingState, value: Value) -> Labels:
    """Ids of ``value``; an integer initializer (quantized codes, zero points) gets ids as a float one does."""
    if value.param is not None and not value.param.dtype.is_floating_point:
        return state.param_labels(value)
    return state.get(value)


def _per_channel(value: Value | None) -> bool:
    """A scale or zero point with more than one element (one per channel, or per block)."""
    return value is not None and (value.shape is None or math.prod(value.shape) > 1)


@coupling_rule("QuantizeLinear", "DequantizeLinear")
def quantize_linear(state: CouplingState, node: Node) -> None:
    x = node.input(0)
    labels = list(_labels(state, x))
    rank = len(labels)
    per_axis = [v for v in node.inputs[1:3] if _per_channel(v)]
    if per_axis and rank:
        axis = int(node.attrs.get("axis", 1)) % rank
        ids = labels[axis]
        if int(node.attrs.get("block_size", 0)) or any(v.shape is None or len(v.shape) != 1 for v in per_axis):
            state.freeze(ids, f"{node.op} scales blocks of axis {axis}", node)
            for value in per_axis:
                state.freeze_value(value, f"{node.op} block scales", node)
        else:
            for value in per_axis:
                scale_ids = _labels(state, value)[0]
                if ids is not None and scale_ids is not None:
                    state.equate(ids, scale_ids)
                elif ids is not None or scale_ids is not None:
                    state.freeze(ids if ids is not None else scale_ids,
                                 f"{node.op}'s per-channel scale or zero point has a fixed width", node)
    state.set(node.outputs[0], labels)
