"""The ONNX emitter: a graphpress :class:`~graphpress.ir.Graph` -> ``onnx.ModelProto``.

Default-domain (and any other foreign-domain) nodes are printed one to one, keeping value and node names;
ops with a registered emitter (the ``graphpress`` macro ops, see :mod:`.macro_ops`) are expanded. Constants
become initializers named after their values. The model is written at ``graph.opset`` (which the ONNX
frontend leaves at the file's own opset when it could not upgrade it) and converted with
``onnx.version_converter`` only when the caller asks for another ``opset``.
"""

from __future__ import annotations

import onnx
from onnx import version_converter

from ...errors import BackendError
from ...frontends.onnx_attrs import ATTR_TYPES_META, python_to_attribute
from ...frontends.onnx_dtypes import torch_to_onnx_dtype
from ...frontends.onnx_reader import CAPTURES, OMITTED, ONNX_INPUT_COUNT, ONNX_TYPE
from ...ir import GRAPHPRESS_DOMAIN, SIDE_OUTPUT, Graph, Node, Value
from . import macro_ops, quant_ops  # noqa: F401  (register the Linear, Attention and QLinear emitters)
from .registry import EmitContext, emitter_for
from .save import PROTOBUF_LIMIT, approx_model_bytes

__all__ = ["to_onnx", "emit_model", "value_info"]

# onnx.checker serializes the whole model; above this many bytes of weights the automatic check is
# skipped (it costs seconds and checks structure the unit tests already cover), unless asked for.
_AUTO_CHECK_MAX_BYTES = 256 * 2**20


def value_info(value: Value, *, with_shape: bool = True) -> onnx.ValueInfoProto:
    """The ONNX declaration of an IR value (its TypeProto verbatim for sequences and string tensors)."""
    if ONNX_TYPE in value.meta:
        info = onnx.ValueInfoProto(name=value.name)
        info.type.CopyFrom(value.meta[ONNX_TYPE])
        return info
    if value.dtype is None and not with_shape:
        return onnx.ValueInfoProto(name=value.name)  # shape inference fills in the type
    if value.dtype is None:
        raise BackendError(f"value %{value.name} has no dtype; run infer_shapes(graph) before writing ONNX")
    shape = list(value.shape) if (with_shape and value.shape is not None) else None
    return onnx.helper.make_tensor_value_info(value.name, torch_to_onnx_dtype(value.dtype), shape)


def _emit_plain(ctx: EmitContext, node: Node) -> None:
    count = node.meta.get(ONNX_INPUT_COUNT, len(node.inputs))
    inputs = [ctx.name(v) for v in node.inputs[:count]]
    _bind_captures(ctx, node, count)
    outputs = ["" if (out.meta.get(OMITTED) and not out.uses) else out.name for out in node.outputs]
    proto = onnx.helper.make_node(node.op, inputs, outputs, name=node.name, domain=node.domain)
    types = node.meta.get(ATTR_TYPES_META, {})
    proto.attribute.extend(python_to_attribute(k, v, types.get(k)) for k, v in node.attrs.items())
    ctx.nodes.append(proto)


def _bind_captures(ctx: EmitContext, node: Node, count: int) -> None:
    """A subgraph reads outer values by name; if a pass replaced one, alias the new value to the old name."""
    for expected, value in zip(node.meta.get(CAPTURES, []), node.inputs[count:]):
        actual = ctx.name(value)
        if actual != expected:
            ctx.add_node("Identity", [actual], [expected])


def _needed_nodes(graph: Graph) -> list[Node]:
    """The nodes to write: all of them, but for the branches that end in side outputs (a branch a torch model's
    forward runs and discards, :data:`graphpress.ir.SIDE_OUTPUT`), which no output of the file needs."""
    if not any(out.meta.get(SIDE_OUTPUT) for node in graph.nodes for out in node.outputs):
        return list(graph.nodes)
    needed: set[int] = set()
    stack = [v.producer for v in graph.outputs if v.producer is not None]
    while stack:
        node = stack.pop()
        if id(node) not in needed:
            needed.add(id(node))
            stack.extend(v.producer for v in node.inputs if v is not None and v.producer is not None)
    return [node for node in graph.nodes if id(node) in needed]


def emit_model(graph: Graph, *, with_data: bool = True, hint_values: list[Value] | None = None,
               int8_compute: bool = False) -> onnx.ModelProto:
    """Build the ModelProto of ``graph`` at ``graph.opset`` without checking it.

    ``with_data=False`` writes large weights as typed graph inputs instead of initializers (what shape
    inference needs, and all a meta-device graph can give); ``hint_values`` get value_info entries.
    ``int8_compute`` lets onnxruntime run low-bit weights with int8 activations (see :func:`to_onnx`).
    """
    ctx = EmitContext(graph, graph.opset, with_data=with_data)
    ctx.int8_compute = int8_compute
    for node in _needed_nodes(graph):
        emitter = emitter_for(node.domain, node.op)
        if emitter is not None:
            emitter(ctx, node)
        elif node.domain == GRAPHPRESS_DOMAIN:
            raise BackendError(
                f"{node.describe()}: no ONNX emitter is registered for {node.qualified_op}; register one with "
                f"@register_emitter({GRAPHPRESS_DOMAIN!r}, {node.op!r})"
            )
        else:
            _emit_plain(ctx, node)
    outputs = []
    for value in graph.outputs:
        name = ctx.name(value)
        if name != value.name:  # an output that is a constant written under a derived name
            ctx.add_node("Identity", [name], [value.name])
        outputs.append(value_info(value, with_shape=with_data))
    onnx_graph = onnx.helper.make_graph(
        ctx.nodes,
        graph.name,
        [value_info(v) for v in graph.inputs] + ctx.weight_inputs,
        outputs,
        initializer=ctx.initializers,
        value_info=[value_info(v) for v in hint_values or [] if v.dtype is not None or ONNX_TYPE in v.meta],
    )
    imports = {d: v for d, v in graph.opset_imports.items() if d != GRAPHPRESS_DOMAIN}
    imports[""] = graph.opset
    for domain, version in ctx.domains.items():
        imports[domain] = max(version, imports.get(domain, 0))
    opsets = [onnx.helper.make_opsetid(d, v) for d, v in sorted(imports.items())]
    ir_version = max(7, onnx.helper.find_min_ir_version_for(opsets, ignore_unknown=True))
    model = onnx.helper.make_model(onnx_graph, opset_imports=opsets, producer_name="graphpress", ir_version=ir_version)
    return model


def to_onnx(graph: Graph, *, opset: int | None = None, check: bool | None = None,
            int8_compute: bool = False) -> onnx.ModelProto:
    """Write ``graph`` as an ONNX model with its weights as initializers.

    ``opset`` converts the result to another default-domain opset (by default the graph's own). ``check``
    runs ``onnx.checker``: always when True, never when False, and by default for models under 256 MiB
    (the checker cannot take a model object above protobuf's 2 GiB at all). ``int8_compute=True`` marks
    quantized linears (MatMulNBits) with ``accuracy_level=4``: onnxruntime then quantizes their activations
    to int8 per block, several times faster on CPUs at decode sizes but no longer bit-faithful to the
    float-activation torch model (default False: float compute, matches torch to rounding).
    """
    model = emit_model(graph, int8_compute=int8_compute)
    if opset is not None and opset != graph.opset:
        try:
            model = version_converter.convert_version(model, opset)
        except Exception as exc:
            raise BackendError(f"cannot convert graph {graph.name!r} from opset {graph.opset} to {opset}: {exc}") from None
    size = approx_model_bytes(model)
    if size < PROTOBUF_LIMIT and (check or (check is None and size < _AUTO_CHECK_MAX_BYTES)):
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise BackendError(f"the ONNX model written for graph {graph.name!r} is invalid: {exc}") from None
    return model
