"""Comparing outputs across runtimes: the helpers every exactness test needs."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fed_inputs", "max_relative_error", "run_onnx"]


def max_relative_error(actual: Any, expected: Any) -> float:
    """``max|actual - expected| / max|expected|`` in float64 (tensors or arrays)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def run_onnx(model: Any, *inputs: Any) -> np.ndarray:
    """First output of an ``onnx.ModelProto`` run in onnxruntime (CPU) on positional torch/numpy inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.asarray(x) for i, x in zip(session.get_inputs(), inputs)}
    return session.run(None, feeds)[0]


def fed_inputs(graph: Any) -> list[Any]:
    """The inputs of an ONNX ``GraphProto`` that a caller feeds: files of IR version < 4 also list every
    initializer as a graph input (an overridable default), which nobody passes."""
    stored = {t.name for t in graph.initializer}
    return [value for value in graph.input if value.name not in stored]
