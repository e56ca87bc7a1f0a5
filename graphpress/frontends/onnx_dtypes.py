"""ONNX element types <-> torch dtypes, and TensorProto <-> torch.Tensor.

The IR keeps every tensor as a ``torch.Tensor`` and every dtype as a ``torch.dtype``; ONNX files speak in
``TensorProto.DataType`` codes. Both the ONNX frontend and the ONNX backend convert through this one module
so the two directions can never disagree. Conversions go through raw little-endian bytes, which handles the
types numpy lacks (bfloat16, float8) without going through ``ml_dtypes``.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

from ..errors import FrontendError

__all__ = [
    "onnx_to_torch_dtype",
    "torch_to_onnx_dtype",
    "tensor_from_proto",
    "tensor_to_proto",
]

_PAIRS: list[tuple[int, str]] = [
    (TensorProto.FLOAT, "float32"),
    (TensorProto.DOUBLE, "float64"),
    (TensorProto.FLOAT16, "float16"),
    (TensorProto.BFLOAT16, "bfloat16"),
    (TensorProto.INT8, "int8"),
    (TensorProto.INT16, "int16"),
    (TensorProto.INT32, "int32"),
    (TensorProto.INT64, "int64"),
    (TensorProto.UINT8, "uint8"),
    (TensorProto.UINT16, "uint16"),
    (TensorProto.UINT32, "uint32"),
    (TensorProto.UINT64, "uint64"),
    (TensorProto.BOOL, "bool"),
    (TensorProto.COMPLEX64, "complex64"),
    (TensorProto.COMPLEX128, "complex128"),
    (TensorProto.FLOAT8E4M3FN, "float8_e4m3fn"),
    (TensorProto.FLOAT8E4M3FNUZ, "float8_e4m3fnuz"),
    (TensorProto.FLOAT8E5M2, "float8_e5m2"),
    (TensorProto.FLOAT8E5M2FNUZ, "float8_e5m2fnuz"),
]
# Only the dtypes this torch build has (older torch lacks some float8 and unsigned types).
_ONNX_TO_TORCH: dict[int, torch.dtype] = {
    code: getattr(torch, name) for code, name in _PAIRS if isinstance(getattr(torch, name, None), torch.dtype)
}
_TORCH_TO_ONNX: dict[torch.dtype, int] = {dtype: code for code, dtype in _ONNX_TO_TORCH.items()}
# Same-width integer views used to move bytes of dtypes numpy cannot hold.
_BIT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def onnx_to_torch_dtype(elem_type: int) -> torch.dtype | None:
    """The torch dtype of an ONNX element type, or None for types torch has no dtype for (string, int4)."""
    return _ONNX_TO_TORCH.get(elem_type)


def torch_to_onnx_dtype(dtype: torch.dtype) -> int:
    """The ONNX element type of a torch dtype; raises for dtypes ONNX cannot express."""
    try:
        return _TORCH_TO_ONNX[dtype]
    except KeyError:
        raise FrontendError(f"torch dtype {dtype} has no ONNX element type") from None


def tensor_from_proto(proto: TensorProto) -> torch.Tensor:
    """Decode an initializer or tensor attribute (its data must already be loaded, not external)."""
    dtype = onnx_to_torch_dtype(proto.data_type)
    if dtype is None:
        name = TensorProto.DataType.Name(proto.data_type)
        raise FrontendError(f"tensor {proto.name!r} has element type {name}, which graphpress cannot hold as a tensor")
    shape = tuple(proto.dims)
    if proto.HasField("raw_data") and dtype in (torch.bfloat16,) + _float8_dtypes():
        # numpy has no such dtype: reinterpret the raw bytes through a same-width integer view.
        raw = np.frombuffer(proto.raw_data, dtype=np.uint8).copy()
        return torch.from_numpy(raw).view(dtype).reshape(shape)
    array = numpy_helper.to_array(proto)
    if array.dtype.kind == "V" or array.dtype.name not in _NUMPY_NATIVE:
        # ml_dtypes arrays (bfloat16 / float8 stored in int32_data): go through their bit pattern.
        bits = array.view(f"u{array.dtype.itemsize}").astype(np.int64)
        return torch.from_numpy(bits).to(_BIT_VIEW[array.dtype.itemsize]).view(dtype).reshape(shape)
    return torch.from_numpy(np.array(array, copy=True)).reshape(shape)  # own, writable memory


_NUMPY_NATIVE = frozenset(
    {"float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
     "uint64", "bool", "complex64", "complex128"}
)


def _float8_dtypes() -> tuple[torch.dtype, ...]:
    return tuple(d for d in _ONNX_TO_TORCH.values() if "float8" in str(d))


def tensor_to_proto(tensor: torch.Tensor, name: str) -> TensorProto:
    """Encode a torch tensor as an ONNX TensorProto (raw little-endian bytes)."""
    elem_type = torch_to_onnx_dtype(tensor.dtype)
    if tensor.device.type == "meta":
        raise FrontendError(f"tensor {name!r} is on the meta device and has no data to write")
    data = tensor.detach().to("cpu").contiguous()
    if data.dtype in (torch.bfloat16,) + _float8_dtypes():
        raw = data.view(_BIT_VIEW[data.element_size()]).numpy().tobytes()
    else:
        raw = data.numpy().tobytes()
    return onnx.helper.make_tensor(name, elem_type, list(data.shape), raw, raw=True)


def shape_and_dtype(type_proto: onnx.TypeProto, symbol_for_unknown) -> tuple[tuple | None, torch.dtype | None]:
    """Read ``(shape, dtype)`` from a tensor TypeProto.

    Symbolic dims come back as their ``dim_param`` string; dims with neither a value nor a name get a fresh
    symbol from ``symbol_for_unknown(axis)`` so every value still has a full-rank shape. Non-tensor types
    (sequences, maps, optionals) give ``(None, element dtype or None)``; callers keep the TypeProto itself.
    """
    if type_proto.HasField("sequence_type") or type_proto.HasField("optional_type"):
        inner = type_proto.sequence_type.elem_type if type_proto.HasField("sequence_type") else type_proto.optional_type.elem_type
        _, dtype = shape_and_dtype(inner, symbol_for_unknown)
        return None, dtype
    if not type_proto.HasField("tensor_type"):
        return None, None
    tensor_type = type_proto.tensor_type
    dtype = onnx_to_torch_dtype(tensor_type.elem_type)
    if not tensor_type.HasField("shape"):
        return None, dtype
    shape = []
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            shape.append(dim.dim_param)
        else:
            shape.append(symbol_for_unknown(axis))
    return tuple(shape), dtype
