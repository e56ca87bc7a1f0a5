"""Writing ONNX files atomically, with weights inline or as external data next to the model.

A crash or a full disk must never leave a half-written model under the user's file name: the model goes
to a temporary file in the target folder and is renamed over the target (``os.replace`` is atomic on one
filesystem). Models above protobuf's 2 GiB limit, or when asked, keep their weights in one
``<name>.data`` file beside the model, referenced by a bare relative file name (never a path that could
escape the folder, which the ONNX frontend would refuse).
"""

from __future__ import annotations

import math
import os
import tempfile

import onnx

from ...errors import BackendError
from ...frontends.onnx_dtypes import onnx_to_torch_dtype
from ...ir import Graph

__all__ = ["save_onnx", "save_model_proto", "PROTOBUF_LIMIT", "approx_model_bytes"]

PROTOBUF_LIMIT = 2**31 - 1
"""protobuf cannot serialize a message above 2 GiB; larger models need external data."""
_EXTERNAL_THRESHOLD_BYTES = 1024
_STRUCTURE_MARGIN_BYTES = 64 * 2**20


def approx_model_bytes(model: onnx.ModelProto) -> int:
    """An upper estimate of the serialized size, from the initializers' shapes.

    ``ModelProto.ByteSize()`` walks the whole message (seconds for a 600 MB model); the weights are
    nearly all of it, and a margin covers the nodes.
    """
    total = _STRUCTURE_MARGIN_BYTES
    for tensor in model.graph.initializer:
        if tensor.HasField("raw_data"):
            total += len(tensor.raw_data)
        else:
            dtype = onnx_to_torch_dtype(tensor.data_type)
            total += math.prod(tensor.dims) * (dtype.itemsize if dtype is not None else 8)
    return total


def save_model_proto(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool | None = None) -> str:
    """Atomically write ``model`` to ``path``; ``external_data=None`` decides by size. Returns the path."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    if external_data is None:
        external_data = approx_model_bytes(model) >= PROTOBUF_LIMIT
    data_name = f"{base}.data"
    with tempfile.TemporaryDirectory(prefix=f".{base}.", dir=folder) as staging:
        staged = os.path.join(staging, base)
        try:
            if external_data:
                copy = onnx.ModelProto()
                copy.CopyFrom(model)  # convert_model_to_external_data edits the proto it is given
                onnx.save_model(copy, staged, save_as_external_data=True, all_tensors_to_one_file=True,
                                location=data_name, size_threshold=_EXTERNAL_THRESHOLD_BYTES)
                onnx.checker.check_model(staged)
            else:
                onnx.save_model(model, staged)
        except (OSError, ValueError, onnx.checker.ValidationError) as exc:
            raise BackendError(f"could not write {path}: {exc}") from None
        staged_data = os.path.join(staging, data_name)
        if os.path.exists(staged_data):
            # The data file lands first, so the model never points at a missing file.
            os.replace(staged_data, os.path.join(folder, data_name))
        os.replace(staged, path)
    return path


def save_onnx(graph: Graph, path: str | os.PathLike, *, opset: int | None = None, external_data: bool | None = None,
              int8_compute: bool = False) -> str:
    """Emit ``graph`` with :func:`to_onnx` and write it atomically to ``path``; returns the absolute path."""
    from .emit import to_onnx

    model = to_onnx(graph, opset=opset, check=False if external_data else None, int8_compute=int8_compute)
    return save_model_proto(model, path, external_data=external_data)
