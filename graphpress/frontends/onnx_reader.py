"""Turning a vetted ONNX ModelProto into a graphpress :class:`~graphpress.ir.Graph`, one node per node.

This is the literal translation: names are kept (initializer names become Parameter keys through
:class:`~graphpress.ir.DetachedBinding`), attributes become python values, declared types become shapes.
Normalization (folding, Linear, Sum) happens afterwards on the IR, in :mod:`.onnx_normalize` and
:mod:`.onnx_fold`, where the IR's editing methods keep use lists consistent.

Two ONNX features need care because the IR tracks data flow through ``Node.inputs`` only:

* subgraphs (If/Loop/Scan bodies) stay opaque ``GraphProto`` attributes, and the outer values they read are
  appended to the node's inputs after its ONNX inputs (``node.meta[ONNX_INPUT_COUNT]`` says where they
  start, ``node.meta[CAPTURES]`` which names the body expects), so dead-code elimination and
  ``replace_all_uses`` see them;
* ops no schema knows (custom domains) load, and are listed in ``graph.metadata["unknown_ops"]``.
"""

from __future__ import annotations

import onnx
import torch

from ..errors import FrontendError
from ..ir import DetachedBinding, Graph, Node, Parameter, Value
from .onnx_attrs import ATTR_TYPES_META, attribute_to_python
from .onnx_dtypes import shape_and_dtype, tensor_from_proto
from .onnx_safety import ordered_nodes, subgraph_captures

__all__ = ["CAPTURES", "ONNX_INPUT_COUNT", "ONNX_TYPE", "OMITTED", "UNKNOWN_OP", "parameter_kind", "set_type", "proto_to_graph", "unknown_dim_symbol"]

ONNX_INPUT_COUNT = "onnx_input_count"
"""``node.meta`` key: how many of the node's inputs are ONNX inputs (the rest are subgraph captures)."""
CAPTURES = "onnx_captures"
"""``node.meta`` key: the outer-scope names the node's subgraphs read, aligned with the trailing inputs."""
ONNX_TYPE = "onnx_type"
"""``value.meta`` key: the TypeProto of a non-tensor value (sequence, map, optional)."""
FILLED = "onnx_filled"
"""``value.meta`` key: a constant folded from ``ConstantOfShape`` (one value repeated); the writer writes it back
as that node while its elements stay equal, so a file that stores its weights that way does not balloon."""
OMITTED = "onnx_omitted"
"""``value.meta`` key: the node output was omitted ("") in the file; the writer omits it again if unused."""
UNKNOWN_OP = "unknown_op"
"""``node.meta`` key: True when no registered ONNX schema describes the node's op."""


def parameter_kind(tensor: torch.Tensor) -> str:
    """Floating tensors with more than one element are weights ("parameter"); the rest (shapes, axes,
    indices, scalars) are "constant", so parameter counts and pruning passes skip them."""
    return "parameter" if tensor.is_floating_point() and tensor.numel() > 1 else "constant"


def unknown_dim_symbol(value_name: str):
    """Names for dims neither the file nor shape inference could size: ``unk__<value>_<axis>``, stable
    across runs and distinct per value (two unknown dims are not known to be equal)."""
    return lambda axis: f"unk__{value_name}_{axis}"


def _declared_types(graph_proto: onnx.GraphProto) -> dict[str, onnx.TypeProto]:
    types = {info.name: info.type for info in graph_proto.value_info}
    types.update({info.name: info.type for info in graph_proto.input})
    types.update({info.name: info.type for info in graph_proto.output})
    return types


def set_type(value: Value, type_proto: onnx.TypeProto) -> None:
    """Give ``value`` the shape and dtype of ``type_proto``; keep the proto itself where the IR's
    (shape, torch dtype) pair cannot say it all (sequences, maps, string tensors)."""
    value.shape, value.dtype = shape_and_dtype(type_proto, unknown_dim_symbol(value.name))
    if not type_proto.HasField("tensor_type") or value.dtype is None:
        value.meta[ONNX_TYPE] = type_proto
    else:
        value.meta.pop(ONNX_TYPE, None)


def _typed_value(name: str, type_proto: onnx.TypeProto | None) -> Value:
    value = Value(name)
    if type_proto is not None:
        set_type(value, type_proto)
    return value


def _is_known(op: str, domain: str) -> bool:
    try:
        return onnx.defs.has(op, domain)
    except Exception:
        return False


def proto_to_graph(model: onnx.ModelProto, opset: int) -> Graph:
    """Build the IR of ``model`` whose default-domain opset is ``opset`` (already converted)."""
    gp = model.graph
    graph = Graph(gp.name or "onnx_model", origin="onnx", opset=opset)
    graph.opset_imports = {entry.domain if entry.domain != "ai.onnx" else "": entry.version for entry in model.opset_import}
    graph.opset_imports[""] = opset
    graph.metadata["onnx_producer"] = f"{model.producer_name} {model.producer_version}".strip()
    graph.metadata["onnx_metadata_props"] = {p.key: p.value for p in model.metadata_props}
    if gp.sparse_initializer:
        raise FrontendError(
            f"graph {gp.name!r} has sparse initializers ({gp.sparse_initializer[0].values.name!r}, ...); "
            "densify them first (onnx.numpy_helper / onnxscript) and load again"
        )
    types = _declared_types(gp)
    values: dict[str, Value] = {}

    for init in gp.initializer:
        if init.data_type == onnx.TensorProto.STRING:
            continue  # becomes a Constant node below: the IR holds only torch tensors as parameters
        tensor = tensor_from_proto(init)
        values[init.name] = graph.add_constant(Parameter(DetachedBinding(init.name, tensor), kind=parameter_kind(tensor)), init.name)
    for info in gp.input:
        if info.name in values:
            continue  # old IR versions list initializers as inputs; graphpress treats them as weights
        value = _typed_value(info.name, info.type)
        graph.claim_name(info.name)
        graph.inputs.append(value)
        values[info.name] = value
    for init in gp.initializer:
        if init.data_type == onnx.TensorProto.STRING:
            out = _typed_value(init.name, onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims)))
            graph.claim_name(init.name)
            graph.append(Node("Constant", [], [out], {"value": init}, name=graph.unique_name(f"{init.name}_const")))
            values[init.name] = out

    nodes = ordered_nodes(gp, frozenset(values))
    for proto in nodes:  # claim every value name first so node names never take one
        for name in proto.output:
            if name:
                graph.claim_name(name)
    unknown: set[str] = set()
    for proto in nodes:
        graph.append(_make_node(graph, proto, values, types))
        if not _is_known(proto.op_type, proto.domain):
            graph.nodes[-1].meta[UNKNOWN_OP] = True
            unknown.add(f"{proto.domain}::{proto.op_type}" if proto.domain else proto.op_type)
    if unknown:
        graph.metadata["unknown_ops"] = sorted(unknown)
    graph.outputs = [values[info.name] for info in gp.output]
    _mark_quantized_weights(graph)
    return graph


def _mark_quantized_weights(graph: Graph) -> None:
    """Integer initializers that ``DequantizeLinear`` turns into floats (a QDQ file's weights) are weights:
    counted as parameters and pruned with their channels, not skipped as index or shape constants."""
    for node in graph.nodes:
        if node.op == "DequantizeLinear" and node.domain == "" and node.inputs[0] is not None:
            param = node.inputs[0].param
            if param is not None and param.kind == "constant" and param.data.numel() > 1:
                param.kind = "parameter"


def _make_node(graph: Graph, proto: onnx.NodeProto, values: dict[str, Value], types) -> Node:
    inputs = [values[name] if name else None for name in proto.input]
    captures = subgraph_captures(proto)
    outputs = []
    for name in proto.output:
        if name:
            value = _typed_value(name, types.get(name))
            values[name] = value
        else:
            value = Value(graph.unique_name(f"{proto.op_type.lower()}_unused"))
            value.meta[OMITTED] = True
        outputs.append(value)
    attrs = {attr.name: attribute_to_python(attr) for attr in proto.attribute}
    node = Node(
        proto.op_type,
        inputs + [values[name] for name in captures],
        outputs,
        attrs,
        name=graph.unique_name(proto.name or proto.op_type.lower()),
        domain="" if proto.domain == "ai.onnx" else proto.domain,
        scope=proto.name,
    )
    empty_lists = {a.name: a.type for a in proto.attribute if isinstance(attrs[a.name], list) and not attrs[a.name]}
    if empty_lists:
        node.meta[ATTR_TYPES_META] = empty_lists
    if captures:
        node.meta[ONNX_INPUT_COUNT] = len(inputs)
        node.meta[CAPTURES] = captures
    return node
