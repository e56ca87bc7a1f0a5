"""Ops that onnxruntime writes into the *default* ONNX domain although ONNX does not define them.

onnxruntime's offline optimizer (``SessionOptions.optimized_model_filepath`` at level "extended") fuses
patterns into internal ops. Most live in the ``com.microsoft`` domain, which ONNX tools accept as a custom
domain, but a few are registered in the default domain: a file holding one fails ``onnx.checker`` and
no ONNX tool but onnxruntime can read it. graphpress could never write such a graph back as valid ONNX,
so the frontend, right after reading:

* rewrites the ones with a standard-op equivalent (``SimplifiedLayerNormalization``, an RMSNorm, becomes
  ``Pow``/``ReduceMean``/``Add``/``Sqrt``/``Reciprocal``/``Mul`` as exporters write RMSNorm), so passes see
  the pattern they know;
* refuses any other default-domain op that no schema knows, naming it and its node, before any work.
"""

from __future__ import annotations

import torch

from ..errors import FrontendError
from ..ir import Graph, Node, Value
from .onnx_dtypes import torch_to_onnx_dtype
from .onnx_reader import UNKNOWN_OP

__all__ = ["lower_runtime_ops"]


def _add(graph: Graph, anchor: Node, op: str, inputs: list[Value], *, out: Value | None = None,
         attrs: dict | None = None, dtype: torch.dtype | None = None) -> Value:
    result = out if out is not None else graph.new_value(f"{anchor.name}_{op.lower()}", None, dtype)
    graph.insert_before(anchor, Node(op, inputs, [result], attrs or {}, name=graph.unique_name(f"{anchor.name}_{op.lower()}"),
                                     scope=anchor.scope))
    return result


def _lower_simplified_layer_norm(graph: Graph, node: Node) -> None:
    """``Y = X / sqrt(mean(X^2 over axes [axis, rank)) + epsilon) * scale``, computed in float32 when
    ``stash_type`` is 1 (the default), as onnxruntime does; the optional second output is 1/std."""
    x, scale = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    inv_out = node.outputs[1] if len(node.outputs) > 1 and node.outputs[1].uses else None
    axis = int(node.attrs.get("axis", -1))
    rank = len(x.shape) if x.shape is not None else None
    if axis >= 0 and rank is None:
        raise FrontendError(f"node {node.scope or node.name!r} (SimplifiedLayerNormalization) normalizes from axis "
                            f"{axis} of an input of unknown rank; graphpress cannot rewrite it into standard ONNX")
    axes = list(range(axis, rank)) if axis >= 0 else list(range(axis, 0))
    dtype = x.dtype or torch.float32
    stash = torch.float32 if int(node.attrs.get("stash_type", 1)) == 1 else dtype
    node.outputs = []
    node.detach_inputs()
    xs = x if stash == dtype else _add(graph, node, "Cast", [x], attrs={"to": torch_to_onnx_dtype(stash)}, dtype=stash)
    squared = _add(graph, node, "Pow", [xs, graph.constant(torch.tensor(2.0, dtype=stash), f"{node.name}_two")], dtype=stash)
    if graph.opset >= 18:  # axes became an input in opset 18
        axes_input = [graph.constant(torch.tensor(axes, dtype=torch.int64), f"{node.name}_axes")]
        mean = _add(graph, node, "ReduceMean", [squared, *axes_input], attrs={"keepdims": 1}, dtype=stash)
    else:  # the version converter stops at the unknown op, so the graph may still be older
        mean = _add(graph, node, "ReduceMean", [squared], attrs={"keepdims": 1, "axes": axes}, dtype=stash)
    eps = graph.constant(torch.tensor(float(node.attrs.get("epsilon", 1e-5)), dtype=stash), f"{node.name}_eps")
    std = _add(graph, node, "Sqrt", [_add(graph, node, "Add", [mean, eps], dtype=stash)], dtype=stash)
    inv = _add(graph, node, "Reciprocal", [std], out=inv_out, dtype=stash)
    normed = _add(graph, node, "Mul", [xs, inv], dtype=stash)
    if stash != dtype:
        normed = _add(graph, node, "Cast", [normed], attrs={"to": torch_to_onnx_dtype(dtype)}, dtype=dtype)
    _add(graph, node, "Mul", [normed, scale], out=y)
    graph.nodes.remove(node)
    node.graph = None


_LOWERINGS = {"SimplifiedLayerNormalization": _lower_simplified_layer_norm}


def lower_runtime_ops(graph: Graph) -> int:
    """Rewrite or refuse default-domain ops no ONNX schema knows (see the module doc); returns the count
    rewritten. Raises :class:`FrontendError` naming the first op that has no rewrite."""
    count = 0
    for node in list(graph.nodes):
        if node.domain != "" or not node.meta.get(UNKNOWN_OP):
            continue
        lower = _LOWERINGS.get(node.op)
        if lower is None:
            raise FrontendError(
                f"node {node.scope or node.name!r} uses op {node.op!r} in the default ONNX domain, which ONNX does "
                "not define (an onnxruntime-internal op, as its offline optimizer writes at level 'extended'); "
                "graphpress cannot write it back as valid ONNX. Give graphpress the model as exported, or "
                "optimized at level 'basic'")
        lower(graph, node)
        count += 1
    unknown = graph.metadata.get("unknown_ops")
    if count and unknown:
        remaining = sorted({n.qualified_op for n in graph.nodes if n.meta.get(UNKNOWN_OP)})
        if remaining:
            graph.metadata["unknown_ops"] = remaining
        else:
            graph.metadata.pop("unknown_ops")
    return count
