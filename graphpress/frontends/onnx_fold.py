"""Constant folding on the IR: nodes whose inputs are all known become IR constants.

Exporters write weights as ``Constant`` nodes, ``ConstantOfShape`` of constants, or ``Transpose`` of an
initializer; shape arithmetic (``Shape -> Gather -> Concat -> Reshape``) hangs off tensors whose shapes are
static. Passes need those as constants (a pruning pass edits a Reshape's target, a Linear's weight), so the
frontend folds them, evaluating each node with onnx's reference evaluator.

Folding is guarded: an output larger than ``max_elements`` is not materialized (a hostile
``ConstantOfShape([10**12])`` must not allocate), random and quantize ops are never folded (folding
``DequantizeLinear`` would undo a quantized model), and nodes with subgraphs or foreign domains are left to
the runtime. A weight that is only re-laid-out (``Transpose``/``Reshape``/``Cast`` of one initializer) keeps
the initializer's name as its Parameter key, so reports still name it as the file does; a 2-D
``Transpose`` of a weight is a transposed view of it, not a copy (see :func:`_binding`).
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator

from ..ir import Binding, DetachedBinding, Graph, Node, Parameter, Value, transposed_binding
from .onnx_attrs import ATTR_TYPES_META, python_to_attribute
from .onnx_dtypes import tensor_from_proto, tensor_to_proto, torch_to_onnx_dtype
from .onnx_reader import CAPTURES, FILLED, ONNX_TYPE, parameter_kind

__all__ = ["fold_constants", "DEFAULT_FOLD_LIMIT"]

DEFAULT_FOLD_LIMIT = 2**26
"""Largest output (in elements) a folded node may produce; weights of real models stay below it."""

_NEVER_FOLD = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
     "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "If", "Loop", "Scan", "SequenceEmpty"}
)
_RELAYOUT = frozenset({"Transpose", "Reshape", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten"})


def _static_shape(value: Value) -> tuple[int, ...] | None:
    if value.shape is None or any(not isinstance(d, int) for d in value.shape):
        return None
    return tuple(value.shape)


def _shape_of(node: Node) -> np.ndarray | None:
    """``Shape``/``Size`` of a tensor whose shape is static need no evaluation."""
    shape = _static_shape(node.inputs[0])
    if shape is None:
        return None
    if node.op == "Size":
        return np.array(math.prod(shape), dtype=np.int64)
    rank = len(shape)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    return np.array(shape[max(0, start):max(0, min(end, rank))], dtype=np.int64)


def _foldable(node: Node, limit: int) -> bool:
    if node.domain != "" or node.op in _NEVER_FOLD or CAPTURES in node.meta or node.attrs.get("value_string") is not None:
        return False
    if any(out.meta.get(ONNX_TYPE) is not None for out in node.outputs):
        return False  # sequences and string tensors are not IR constants
    present = [v for v in node.inputs if v is not None]
    if not all(v.param is not None for v in present):
        return False
    for out in node.outputs:
        shape = _static_shape(out)
        if shape is None or math.prod(shape) > limit:
            return False
    if node.op == "ConstantOfShape":  # the target size is in the input; check it even if inference did not
        return math.prod(node.inputs[0].param.data.tolist()) <= limit
    return True


def _evaluate(node: Node, opset: int) -> list[np.ndarray] | None:
    """Outputs of ``node`` computed by onnx's reference evaluator; None where it cannot (the node then stays
    for the runtime: the reference implementation lacks or mishandles some ops and types)."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]
    outs = [f"out{i}" for i in range(len(node.outputs))]
    proto = onnx.helper.make_node(node.op, names, outs)
    types = node.meta.get(ATTR_TYPES_META, {})
    proto.attribute.extend(python_to_attribute(k, v, types.get(k)) for k, v in node.attrs.items())
    inits = [tensor_to_proto(v.param.data, n) for n, v in zip(names, node.inputs) if v is not None]
    out_info = [onnx.helper.make_tensor_value_info(n, torch_to_onnx_dtype(o.dtype), None) for n, o in zip(outs, node.outputs)]
    graph = onnx.helper.make_graph([proto], "fold", [], out_info, initializer=inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the evaluator prints its failures
            return ReferenceEvaluator(model).run(None, {})
    except Exception:
        return None


def _to_tensor(array: np.ndarray, like: Value) -> torch.Tensor:
    proto = onnx.numpy_helper.from_array(np.asarray(array), "folded")
    tensor = tensor_from_proto(proto)
    return tensor.to(like.dtype) if like.dtype is not None and tensor.dtype != like.dtype else tensor


def _binding(node: Node, out: Value, tensor: torch.Tensor) -> tuple[Binding, str]:
    """Where a folded output lives: a weight's ``Identity`` is the weight, its plain transpose a transposed
    view of the weight itself
    (one stored tensor, so a tied embedding read by Gather and, transposed, by the LM head MatMul stays
    one tensor when pruned); other re-laid-out weights keep the weight's key; the rest are new constants."""
    source = node.inputs[0] if node.inputs else None
    if node.op not in _RELAYOUT or source is None or source.param is None or source.param.kind != "parameter":
        return DetachedBinding(out.name, tensor), parameter_kind(tensor)
    if node.op == "Identity":
        return source.param.binding, "parameter"  # the legacy exporter's Identity of a layer shared by blocks
    if node.op == "Transpose" and source.param.data.dim() == 2 and list(node.attrs.get("perm", [1, 0])) == [1, 0] \
            and source.param.dtype == tensor.dtype:
        return transposed_binding(source.param.binding), "parameter"
    return DetachedBinding(source.param.key, tensor), "parameter"  # the same weight, only laid out differently


def _replace_by_constant(graph: Graph, node: Node, out: Value, tensor: torch.Tensor) -> None:
    binding, kind = _binding(node, out, tensor)
    folded = Value(out.name, param=Parameter(binding, kind=kind))
    if node.op == "ConstantOfShape":
        folded.meta[FILLED] = True
    graph.constants.append(folded)
    graph.replace_all_uses(out, folded)


def fold_constants(graph: Graph, *, max_elements: int = DEFAULT_FOLD_LIMIT) -> int:
    """Fold every foldable node of ``graph`` in place; returns how many nodes were folded."""
    folded = 0
    for node in list(graph.nodes):
        if node.op in ("Shape", "Size") and node.domain == "":
            result = _shape_of(node)
            if result is None:
                continue
            results = [result]
        elif node.op == "Constant" and node.domain == "" and isinstance(node.attrs.get("value"), onnx.TensorProto):
            continue  # string tensors: torch cannot hold them, the node stays
        elif _foldable(node, max_elements):
            results = _evaluate(node, graph.opset)
            if results is None:
                continue
        else:
            continue
        for out, array in zip(node.outputs, results):
            _replace_by_constant(graph, node, out, _to_tensor(array, out))
        node.detach_inputs()
        graph.nodes.remove(node)
        folded += 1
    graph.prune_unused_constants()
    return folded
