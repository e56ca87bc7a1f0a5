"""Running a graph (or an ONNX model) in onnxruntime on the CPU, for numerics checks and benchmarks.

Two intra-op threads by default: the machines graphpress is developed on share two cores, and a fixed
thread count makes timings comparable between runs. Models above protobuf's 2 GiB limit are written to a
temporary folder with external data and loaded from there.
"""

from __future__ import annotations

import os
import tempfile
from typing import Mapping, Sequence

import numpy as np
import torch

import onnx

from ...errors import BackendError
from ...ir import Graph
from .emit import to_onnx
from .save import PROTOBUF_LIMIT, approx_model_bytes, save_model_proto

__all__ = ["run_onnxruntime", "make_session"]


def make_session(model: onnx.ModelProto, *, threads: int = 2):
    """An onnxruntime InferenceSession on the CPU execution provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if approx_model_bytes(model) < PROTOBUF_LIMIT:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory(prefix="graphpress-ort-") as folder:
        path = os.path.join(folder, "model.onnx")
        save_model_proto(model, path, external_data=True)
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bfloat16:
            raise BackendError("onnxruntime's python API cannot take bfloat16 inputs; cast them to float32 first")
        return value.detach().cpu().numpy()
    return value if isinstance(value, (np.ndarray, list)) else np.asarray(value)


def run_onnxruntime(
    graph_or_model: Graph | onnx.ModelProto,
    inputs: Sequence | Mapping[str, object],
    *,
    threads: int = 2,
) -> list:
    """Run the model once; ``inputs`` by position (graph input order) or by name.

    Returns the outputs as ``torch.Tensor`` when any input was one, else as ``np.ndarray`` (sequence
    outputs come back as lists).
    """
    model = to_onnx(graph_or_model) if isinstance(graph_or_model, Graph) else graph_or_model
    try:
        session = make_session(model, threads=threads)
    except Exception as exc:
        raise BackendError(f"onnxruntime cannot load the model: {exc}") from None
    names = [i.name for i in session.get_inputs()]
    if isinstance(inputs, Mapping):
        given = dict(inputs)
        values = list(given.values())
    else:
        values = list(inputs)
        if len(values) != len(names):
            raise BackendError(f"the model takes {len(names)} inputs ({', '.join(names)}), got {len(values)}")
        given = dict(zip(names, values))
    want_torch = any(isinstance(v, torch.Tensor) for v in values)
    feed = {name: _as_numpy(value) for name, value in given.items()}
    results = session.run(None, feed)
    if want_torch:
        # np.require keeps 0-d outputs 0-d (np.ascontiguousarray would make them shape (1,))
        return [torch.from_numpy(np.require(r, requirements="CW")) if isinstance(r, np.ndarray) else r
                for r in results]
    return results
