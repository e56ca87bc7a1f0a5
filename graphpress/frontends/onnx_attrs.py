"""ONNX node attributes <-> the python values the IR keeps in ``Node.attrs``.

The IR stores attributes as plain python values (int, float, str, lists of them, ``torch.Tensor`` for a
tensor) so passes can read and edit them without protobuf. What has no plain form (subgraphs, sparse
tensors, type protos, string tensors) stays an ONNX proto object and is written back unchanged. An empty
list carries no element type, so the reader remembers the declared type in ``node.meta`` for the writer.
"""

from __future__ import annotations

from typing import Any

import onnx
import torch
from onnx import AttributeProto

from .onnx_dtypes import onnx_to_torch_dtype, tensor_from_proto, tensor_to_proto

__all__ = ["ATTR_TYPES_META", "attribute_to_python", "python_to_attribute"]

ATTR_TYPES_META = "onnx_attr_types"
"""``node.meta`` key: ``{attribute name: AttributeProto type}`` for attributes whose type a value can't show."""


def _decode(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _tensor(proto: onnx.TensorProto) -> torch.Tensor | onnx.TensorProto:
    return tensor_from_proto(proto) if onnx_to_torch_dtype(proto.data_type) is not None else proto


def attribute_to_python(attr: AttributeProto) -> Any:
    """The python value of one attribute (protos for subgraphs, sparse tensors and string tensors)."""
    kind = attr.type
    if kind == AttributeProto.INT:
        return int(attr.i)
    if kind == AttributeProto.FLOAT:
        return float(attr.f)
    if kind == AttributeProto.STRING:
        return _decode(attr.s)
    if kind == AttributeProto.INTS:
        return [int(v) for v in attr.ints]
    if kind == AttributeProto.FLOATS:
        return [float(v) for v in attr.floats]
    if kind == AttributeProto.STRINGS:
        return [_decode(v) for v in attr.strings]
    if kind == AttributeProto.TENSOR:
        return _tensor(attr.t)
    if kind == AttributeProto.TENSORS:
        return [_tensor(t) for t in attr.tensors]
    if kind == AttributeProto.GRAPH:
        return attr.g
    if kind == AttributeProto.GRAPHS:
        return list(attr.graphs)
    if kind == AttributeProto.SPARSE_TENSOR:
        return attr.sparse_tensor
    if kind == AttributeProto.SPARSE_TENSORS:
        return list(attr.sparse_tensors)
    if kind == AttributeProto.TYPE_PROTO:
        return attr.tp
    if kind == AttributeProto.TYPE_PROTOS:
        return list(attr.type_protos)
    raise ValueError(f"attribute {attr.name!r} has unknown type {kind}")


def _encode_item(value: Any) -> Any:
    return tensor_to_proto(value, "") if isinstance(value, torch.Tensor) else value


def python_to_attribute(name: str, value: Any, declared_type: int | None = None) -> AttributeProto:
    """Build an AttributeProto; ``declared_type`` disambiguates empty lists (default: INTS)."""
    if isinstance(value, (list, tuple)):
        items = [_encode_item(v) for v in value]
        if not items:
            return onnx.helper.make_attribute(name, [], attr_type=declared_type or AttributeProto.INTS)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items) and any(
            isinstance(v, float) for v in items
        ):
            items = [float(v) for v in items]  # a mixed int/float list is a FLOATS attribute
        return onnx.helper.make_attribute(name, items)
    if isinstance(value, bool):
        value = int(value)
    return onnx.helper.make_attribute(name, _encode_item(value))
