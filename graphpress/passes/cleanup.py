"""Clean-up passes: dead-code elimination and constant folding. Both are exact."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..ir import SIDE_OUTPUT, Graph, Node, model_sources
from .base import Pass, PassResult
from .context import PassContext
from .options import Option
from .registry import register_pass

__all__ = ["DeadCodeElimination", "FoldConstants", "eliminate_dead_code"]


def eliminate_dead_code(graph: Graph) -> int:
    """Remove nodes none of whose outputs is read (walking backwards, so chains go at once). Side outputs
    (:data:`graphpress.ir.SIDE_OUTPUT`: a branch the model's forward runs though no output reads it) count as
    read: the model still computes them, and passes must keep their weights consistent."""
    removed = 0
    outputs = {id(v) for v in graph.outputs}
    for node in reversed(list(graph.nodes)):
        if any(out.uses or id(out) in outputs or out.meta.get(SIDE_OUTPUT) for out in node.outputs):
            continue
        graph.remove(node)
        removed += 1
    return removed


@register_pass
class DeadCodeElimination(Pass):
    name = "dce"
    summary = "Remove nodes whose results are never used, and constants nothing reads."
    exact = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        nodes = eliminate_dead_code(graph)
        constants = graph.prune_unused_constants()
        return PassResult(graph, bool(nodes or constants), {"nodes_removed": nodes, "constants_removed": constants})


_NUMPY_SAFE = {torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8,
               torch.uint8, torch.bool}


def _evaluate_node(graph: Graph, node: Node) -> list[torch.Tensor] | None:
    """Compute a node whose inputs are all constants with onnx's reference evaluator (any ONNX op)."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    feeds, inputs = {}, []
    for i, value in enumerate(node.inputs):
        if value is None:
            inputs.append("")
            continue
        tensor = value.param.data
        if tensor.dtype not in _NUMPY_SAFE:
            return None
        feeds[f"in{i}"] = tensor.detach().cpu().numpy()
        inputs.append(f"in{i}")
    outs = [f"out{i}" for i in range(len(node.outputs))]
    proto = helper.make_node(node.op, inputs, outs, domain=node.domain or None)
    proto.attribute.extend(
        helper.make_attribute(k, numpy_helper.from_array(v.numpy()) if isinstance(v, torch.Tensor) else v)
        for k, v in node.attrs.items()
    )
    g = helper.make_graph([proto], "fold",
                          [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                           for k, a in feeds.items()],
                          [helper.make_empty_tensor_value_info(o) for o in outs])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", graph.opset)])
    results = ReferenceEvaluator(model).run(None, feeds)
    # np.require, not np.ascontiguousarray: the latter turns a folded 0-d constant into shape (1,)
    return [torch.from_numpy(np.require(numpy_helper.to_array(numpy_helper.from_array(np.asarray(r))),
                                        requirements="CW")) for r in results]


@register_pass
class FoldConstants(Pass):
    name = "fold-constants"
    summary = "Precompute nodes whose inputs are all constants (shapes, casts, reshapes of weights)."
    exact = True
    options = (
        Option("max_elements", "int", 1 << 22, "skip results larger than this many elements", low=1),
    )

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        folded = 0
        for node in list(graph.nodes):
            if node.domain not in ("", "ai.onnx") or not node.inputs:
                continue
            if node.op == "Shape":
                folded += self._fold_shape(graph, node)
                continue
            if not all(v is None or v.param is not None for v in node.inputs):
                continue
            if any(v is not None and v.param.is_meta for v in node.inputs):
                continue
            produced = sum(math.prod(o.shape) for o in node.outputs if o.shape and all(isinstance(d, int) for d in o.shape))
            consumed = sum(v.param.data.numel() for v in node.inputs if v is not None)
            if produced > max(self.opts["max_elements"], consumed):
                continue
            try:
                results = _evaluate_node(graph, node)
            except Exception:  # noqa: BLE001 - an op the reference evaluator lacks simply stays unfolded
                results = None
            if results is None:
                continue
            self._replace(graph, node, results)
            folded += 1
        dropped = graph.prune_unused_constants()
        return PassResult(graph, folded > 0, {"nodes_folded": folded, "constants_removed": dropped})

    @staticmethod
    def _replace(graph: Graph, node: Node, results: list[torch.Tensor]) -> None:
        # A result computed from a torch model's weights stays marked as such: the model recomputes it from
        # them in forward, so no later pass may reshape the folded copy alone.
        sources = model_sources(v.param for v in node.inputs if v is not None)
        for out, tensor in zip(node.outputs, results):
            held = graph.evaluated_constant(tensor, out.name, node.qualified_op, sources) if sources else \
                graph.constant(tensor, out.name)
            graph.replace_all_uses(out, held)
        graph.remove(node)

    def _fold_shape(self, graph: Graph, node: Node) -> int:
        source = node.input(0)
        if source is None or source.shape is None or not all(isinstance(d, int) for d in source.shape):
            return 0
        dims = list(source.shape)
        start, end = node.attrs.get("start", 0), node.attrs.get("end", len(dims))
        self._replace(graph, node, [torch.tensor(dims[start:end], dtype=torch.int64)])
        return 1
