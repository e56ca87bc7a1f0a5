"""Refusing hostile or broken ONNX files before graphpress acts on them (issue 9).

An ONNX file is untrusted input. It can be truncated or not ONNX at all, declare a tensor of 10^12
elements so that a reader allocates the machine away, point its external data at ``../../etc/passwd``
or an absolute path, or wire its nodes into a cycle. Every check here runs on the parsed protobuf
*before* any external file is opened or any tensor is decoded, and each refusal raises
:class:`~graphpress.errors.UnsafeFileError` with a message that names the tensor or node at fault.
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass
from typing import Iterator

import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, GraphProto, NodeProto, TensorProto

from ..errors import FrontendError, UnsafeFileError
from .onnx_dtypes import onnx_to_torch_dtype

__all__ = ["ReadLimits", "read_model", "check_tensors", "ordered_nodes", "subgraph_captures"]


_PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds on what a file may ask for. The defaults admit a 70B-parameter model."""

    max_tensor_elements: int = 2**34
    max_total_elements: int = 2**38


def read_model(source: str | os.PathLike | onnx.ModelProto, limits: ReadLimits = ReadLimits()) -> tuple[onnx.ModelProto, str | None]:
    """Parse and vet a model; returns it with external data loaded, and the folder it came from."""
    if isinstance(source, onnx.ModelProto):
        model, base_dir = source, None
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FrontendError(f"{path}: no such ONNX file")
        if os.path.getsize(path) > _PROTOBUF_LIMIT:
            raise FrontendError(
                f"{path} is {os.path.getsize(path):,} bytes, over protobuf's 2 GiB limit for one message; ONNX "
                "models that large keep their weights as external data (onnx.save_model(save_as_external_data=True))"
            )
        model = onnx.ModelProto()
        with open(path, "rb") as handle:
            payload = handle.read()
        try:
            model.ParseFromString(payload)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise UnsafeFileError(f"{path} is not a readable ONNX model (truncated or corrupt file): {exc}") from None
        base_dir = os.path.dirname(os.path.abspath(path))
    _check_header(model)
    check_tensors(model, base_dir, limits)
    if base_dir is not None and _has_external_data(model):
        onnx.external_data_helper.load_external_data_for_model(model, base_dir)
    return model, base_dir


def _check_header(model: onnx.ModelProto) -> None:
    # A truncated or random file often still decodes as a protobuf; these fields tell ONNX from noise.
    if model.ir_version < 1 or not model.HasField("graph"):
        raise UnsafeFileError("not an ONNX model: no IR version or no graph (the file is empty, truncated or not ONNX)")
    if model.ir_version >= 3 and not model.opset_import:
        raise UnsafeFileError("the model declares no opset (opset_import is empty); the file is corrupt")
    if not model.graph.output:
        raise UnsafeFileError(f"graph {model.graph.name!r} has no outputs; the file is truncated or corrupt")


def _all_tensors(graph: GraphProto) -> Iterator[TensorProto]:
    """Initializers and tensor attributes of ``graph`` and every subgraph inside it."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_tensors(sub)


def _has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == TensorProto.EXTERNAL for t in _all_tensors(model.graph))


def check_tensors(model: onnx.ModelProto, base_dir: str | None, limits: ReadLimits = ReadLimits()) -> None:
    """Refuse absurd sizes, data that disagrees with its declared shape, and external data outside ``base_dir``."""
    total = 0
    for tensor in _all_tensors(model.graph):
        if any(d < 0 for d in tensor.dims):
            raise UnsafeFileError(f"tensor {tensor.name!r} declares a negative dimension {list(tensor.dims)}")
        count = math.prod(tensor.dims)
        if count > limits.max_tensor_elements:
            raise UnsafeFileError(
                f"tensor {tensor.name!r} declares {count:,} elements (shape {list(tensor.dims)}), more than the "
                f"limit of {limits.max_tensor_elements:,}; raise ReadLimits.max_tensor_elements if this is real"
            )
        total += count
        if total > limits.max_total_elements:
            raise UnsafeFileError(f"the model's tensors declare more than {limits.max_total_elements:,} elements in all")
        if tensor.data_location == TensorProto.EXTERNAL:
            _check_external(tensor, count, base_dir)
        else:
            _check_stored_size(tensor, count)


def _itemsize(tensor: TensorProto) -> int | None:
    dtype = onnx_to_torch_dtype(tensor.data_type)
    return None if dtype is None else dtype.itemsize


def _check_stored_size(tensor: TensorProto, count: int) -> None:
    itemsize = _itemsize(tensor)
    if itemsize is None:
        return
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != count * itemsize:
            raise UnsafeFileError(
                f"tensor {tensor.name!r} declares shape {list(tensor.dims)} ({count * itemsize} bytes) but stores "
                f"{len(tensor.raw_data)} bytes; the file is truncated or corrupt"
            )
        return
    stored = max(len(tensor.float_data), len(tensor.int32_data), len(tensor.int64_data),
                 len(tensor.double_data), len(tensor.uint64_data))
    if tensor.data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        stored //= 2
    if stored != count:
        raise UnsafeFileError(
            f"tensor {tensor.name!r} declares {count} elements (shape {list(tensor.dims)}) but stores {stored}"
        )


def _is_escaping(location: str) -> bool:
    normalized = location.replace("\\", "/")
    parts = normalized.split("/")
    return (
        os.path.isabs(location)
        or normalized.startswith("/")
        or (len(location) > 1 and location[1] == ":")  # a Windows drive letter
        or ".." in parts
        or "\x00" in location
    )


def _check_external(tensor: TensorProto, count: int, base_dir: str | None) -> None:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location or _is_escaping(location):
        raise UnsafeFileError(
            f"tensor {tensor.name!r} keeps its data at {location!r}, outside the model's folder; graphpress only "
            "reads external data from files next to the model (a relative path without '..')"
        )
    if base_dir is None:
        raise FrontendError(
            f"tensor {tensor.name!r} keeps its data in the external file {location!r}; pass the model's path to "
            "load_onnx instead of a ModelProto so the file can be found"
        )
    root = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, target]) != root:
        raise UnsafeFileError(f"tensor {tensor.name!r}: external file {location!r} resolves outside {root} (a symlink?)")
    if not os.path.isfile(target):
        raise FrontendError(f"tensor {tensor.name!r}: external data file {location!r} is missing next to the model")
    offset = int(info.get("offset", "0") or 0)
    itemsize = _itemsize(tensor)
    length = int(info["length"]) if info.get("length") else (None if itemsize is None else count * itemsize)
    if offset < 0 or (length is not None and (length < 0 or offset + length > os.path.getsize(target))):
        raise UnsafeFileError(
            f"tensor {tensor.name!r} asks for bytes [{offset}, {offset + (length or 0)}) of {location!r}, "
            f"which holds only {os.path.getsize(target)} bytes"
        )
    if itemsize is not None and length is not None and length != count * itemsize:
        raise UnsafeFileError(f"tensor {tensor.name!r}: external length {length} does not match shape {list(tensor.dims)}")


def _free_names(graph: GraphProto) -> set[str]:
    """Names a (sub)graph reads but does not define: the outer-scope values it captures."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    used = {v.name for v in graph.output}
    for node in graph.node:
        used.update(node.input)
        used.update(subgraph_captures(node))
        defined.update(node.output)
    return used - defined


def subgraph_captures(node: NodeProto) -> list[str]:
    """Outer-scope names the subgraphs of ``node`` (If/Loop/Scan bodies) read, in a stable order."""
    names: set[str] = set()
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            names |= _free_names(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            for sub in attr.graphs:
                names |= _free_names(sub)
    return sorted(names)


def ordered_nodes(graph: GraphProto, outer_names: frozenset[str] = frozenset()) -> list[NodeProto]:
    """The graph's nodes in a topological order (exporters do not always write one).

    Refuses a cycle and a node that reads a name nothing defines; both mean the file is broken or hostile.
    """
    defined = set(outer_names) | {v.name for v in graph.input} | {t.name for t in graph.initializer}
    defined |= {s.values.name for s in graph.sparse_initializer}
    defined.add("")
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            if out and (out in producer or out in defined):
                raise UnsafeFileError(f"value {out!r} is defined twice (second time by {node.op_type} {node.name!r})")
            if out:
                producer[out] = index
    reads = [set(node.input) | set(subgraph_captures(node)) for node in graph.node]
    pending = [sum(1 for name in names if name not in defined) for names in reads]
    readers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in reads[index]:
            if name in defined:
                continue
            if name not in producer:
                raise UnsafeFileError(
                    f"node {node.name or node.op_type!r} ({node.op_type}) reads {name!r}, which no node, input or "
                    "initializer defines; the file is truncated or corrupt"
                )
            readers.setdefault(name, []).append(index)
    # A heap on the original index keeps the file's order wherever it is already topological.
    ready = [i for i, count in enumerate(pending) if count == 0]
    heapq.heapify(ready)
    order: list[NodeProto] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(graph.node[index])
        for out in graph.node[index].output:
            for reader in readers.pop(out, []):
                pending[reader] -= 1
                if pending[reader] == 0:
                    heapq.heappush(ready, reader)
    if len(order) != len(graph.node):
        stuck = [graph.node[i] for i, count in enumerate(pending) if count > 0]
        names = ", ".join(f"{n.name or '?'} ({n.op_type})" for n in stuck[:5])
        raise UnsafeFileError(f"the graph has a cycle through {len(stuck)} nodes, e.g. {names}")
    return order
