"""Bringing an ONNX model to the IR's canonical opset (18) with ``onnx.version_converter``.

Passes are written against opset-18 semantics (axes as inputs, Split sizes as an input, numpy broadcasting),
so the frontend upgrades older models once. The converter has gaps; this module patches the one that the
ONNX backend test data hits (channel-wise ``PRelu`` slopes of opset < 7, which relied on the old
"broadcast along axis 1" rule) and, where conversion still fails, keeps the model at its own opset and
says so: ``Graph.opset`` then records the original version and the emitter writes that version back.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

__all__ = ["CANONICAL_OPSET", "default_opset", "upgrade_opset"]

CANONICAL_OPSET = 18


def default_opset(model: onnx.ModelProto) -> int | None:
    """The model's version of the default ONNX domain, or None when it imports none."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def upgrade_opset(model: onnx.ModelProto, target: int = CANONICAL_OPSET) -> tuple[onnx.ModelProto, int, str | None]:
    """Return ``(model, opset, problem)``: the model at ``target`` when it was older and conversion worked.

    A model already at or above ``target`` is left alone (down-conversion loses information). When the
    converter fails, the original model comes back with its own opset and ``problem`` says why.
    """
    current = default_opset(model)
    if current is None or current >= target:
        return model, current if current is not None else target, None
    if current < 7:
        _reshape_channel_slopes(model)
    try:
        converted = version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises bare RuntimeErrors from C++
        problem = f"onnx.version_converter could not convert opset {current} to {target}: {exc}"
        warnings.warn(f"{problem}; keeping opset {current}", stacklevel=3)
        return model, current, problem
    return converted, target, None


def _reshape_channel_slopes(model: onnx.ModelProto) -> None:
    """Opset < 7 PRelu broadcast a 1-D slope along axis 1; numpy broadcasting (opset 7+) aligns it to the
    last axis instead. Reshape such slopes to ``[C, 1, ..., 1]`` so the converted model computes the same."""
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {
        info.name: len(info.type.tensor_type.shape.dim)
        for info in list(inferred.graph.value_info) + list(inferred.graph.input)
        if info.type.tensor_type.HasField("shape")
    }
    initializers = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "PRelu" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        slope = numpy_helper.to_array(initializers[node.input[1]])
        rank = ranks.get(node.input[0], 0)
        if slope.ndim != 1 or slope.size == 1 or rank <= 2:
            continue
        reshaped = numpy_helper.from_array(
            np.ascontiguousarray(slope.reshape((slope.size,) + (1,) * (rank - 2))), f"{node.input[1]}__per_channel"
        )
        model.graph.initializer.append(reshaped)
        if any(i.name == node.input[1] for i in model.graph.input):
            # Old IR versions list initializers among the inputs; the new one must be listed too.
            model.graph.input.append(onnx.helper.make_tensor_value_info(reshaped.name, reshaped.data_type, reshaped.dims))
        node.input[1] = reshaped.name
