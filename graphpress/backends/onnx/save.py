"""Writing ONNX files atomically, with weights inline or as external data next to the model.

A crash or a full disk must never leave a half-written model under the user's file name: the model goes
to a temporary file in the target folder and is renamed over the target (``os.replace`` is atomic on one
filesystem). Models above protobuf's 2 GiB limit, or when asked, keep their weights in one
``<name>.data`` file beside the model, referenced by a bare relative file name (never a path that could
escape the folder, which the ONNX frontend would refuse).
"""

from __future__ import annotations

import os
import tempfile

import onnx

from ...errors import BackendError
from ...ir import Graph

__all__ = ["save_onnx", "save_model_proto"]

_PROTOBUF_LIMIT = 2**31 - 1
_EXTERNAL_THRESHOLD_BYTES = 1024


def save_model_proto(model: onnx.ModelProto, path: str | os.PathLike, *, external_data: bool | None = None) -> str:
    """Atomically write ``model`` to ``path``; ``external_data=None`` decides by size. Returns the path."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    if external_data is None:
        external_data = model.ByteSize() >= _PROTOBUF_LIMIT
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


def save_onnx(graph: Graph, path: str | os.PathLike, *, opset: int | None = None, external_data: bool | None = None) -> str:
    """Emit ``graph`` with :func:`to_onnx` and write it atomically to ``path``; returns the absolute path."""
    from .emit import to_onnx

    model = to_onnx(graph, opset=opset, check=external_data is not True)
    return save_model_proto(model, path, external_data=external_data)
