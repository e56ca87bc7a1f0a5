"""Tensors the model computes from its own weights through an op graphpress can't lower: evaluated once.

torch's orthogonal parametrization builds a layer's weight with ``linalg_householder_product`` or
``matrix_exp``, which have no ONNX form. Such a tensor depends on no model input, so instead of refusing the
whole model the frontend runs the aten ops that compute it on the weights' own tensors and holds the result
as a constant (:class:`~graphpress.ir.EvaluatedBinding`). Every later op that reads such a constant and still
depends on weights alone is evaluated too (the orthogonal map's ``base @ Q``, the transpose back), so the layer
reads one evaluated weight instead of a half-lowered formula. The model itself keeps recomputing that weight
from its parameters, which the graph no longer reads: the coupling analysis freezes the evaluated tensor's
channels and names the op, so no pass reshapes what the model would compute at its old size.

Anything that also depends on a model input, or on weights on the meta device (no values to compute with),
is not evaluated: the op without a rule is then refused by name as before.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx

from ..ir import EvaluatedBinding, Value, model_sources
from .torch_context import LoweringContext

__all__ = ["evaluate_from_weights", "reads_evaluated"]


def _known_tensor(found: Any) -> bool:
    """Whether what an FX node became needs no computing: a weight, buffer or constant (or a list of them),
    or a plain Python object (a number, a dtype); False for a value the graph computes."""
    if isinstance(found, Value):
        return found.param is not None
    if isinstance(found, (list, tuple)):
        return all(isinstance(v, Value) and v.param is not None for v in found)
    return True


def _values_in(found: Any) -> list[Value]:
    """The IR values in what an FX node became (one value, a list of them, or none)."""
    if isinstance(found, Value):
        return [found]
    if isinstance(found, (list, tuple)):
        return [v for v in found if isinstance(v, Value)]
    return []


def _weight_only_ancestry(ctx: LoweringContext, node: torch.fx.Node) -> tuple[list[torch.fx.Node], list[Value]] | None:
    """The FX nodes to run to compute ``node`` from tensors the IR holds, and those tensors; None when a
    model input (or a weight without values) is among its ancestors."""
    to_run: dict[torch.fx.Node, None] = {}
    leaves: dict[int, Value] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        if current in to_run:
            continue
        to_run[current] = None
        for parent in current.all_input_nodes:
            found = ctx.env.get(parent)
            if parent.op == "call_function" and not _known_tensor(found):
                stack.append(parent)
            elif _known_tensor(found):
                leaves.update((id(v), v) for v in _values_in(found))
            else:
                return None  # a model input
    if any(v.param.is_meta for v in leaves.values()):
        return None
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    return sorted(to_run, key=order.__getitem__), list(leaves.values())


def _run(ctx: LoweringContext, nodes: list[torch.fx.Node]) -> Any:
    """Run ``nodes`` (in graph order) eagerly on the IR's tensors; returns the last one's result."""
    results: dict[torch.fx.Node, Any] = {}

    def tensor_of(n: torch.fx.Node) -> Any:
        if n in results:
            return results[n]
        found = ctx.env[n]
        if isinstance(found, Value):
            return found.param.data
        if isinstance(found, (list, tuple)):
            return [v.param.data if isinstance(v, Value) else v for v in found]
        return found

    with torch.no_grad():
        for n in nodes:
            args = torch.fx.node.map_arg(n.args, tensor_of)
            kwargs = torch.fx.node.map_arg(n.kwargs, tensor_of)
            results[n] = n.target(*args, **kwargs)
    return results[nodes[-1]]


def _evaluated_op(leaves: list[Value], node: torch.fx.Node) -> str:
    """The op the evaluation is for: the one an evaluated input was made for, else ``node``'s own."""
    for value in leaves:
        if isinstance(value.param.binding, EvaluatedBinding):
            return value.param.binding.op
    return str(node.target)


def _hold(ctx: LoweringContext, tensor: torch.Tensor, hint: str, op: str, sources: list[str]) -> Value:
    """A constant holding an evaluated tensor (complex ones as real pairs, as the IR carries them)."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor)
    return ctx.graph.evaluated_constant(tensor, hint, op, sources)


def evaluate_from_weights(ctx: LoweringContext, node: torch.fx.Node) -> Any:
    """``node``'s result computed now from the weights it depends on, held as evaluated constants (a list
    for several outputs); None when it depends on a model input or the weights have no values."""
    if node.target is operator.getitem or not isinstance(node.target, torch._ops.OpOverload):
        return None
    found = _weight_only_ancestry(ctx, node)
    if found is None:
        return None
    nodes, leaves = found
    try:
        result = _run(ctx, nodes)
    except Exception:  # noqa: BLE001 - an op that can't run eagerly here: lowered or refused as before
        return None
    op, sources = _evaluated_op(leaves, node), model_sources(v.param for v in leaves)
    if isinstance(result, torch.Tensor):
        return _hold(ctx, result, node.name, op, sources)
    if isinstance(result, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in result):
        return [_hold(ctx, t, f"{node.name}_{i}", op, sources) for i, t in enumerate(result)]
    return None


def reads_evaluated(ctx: LoweringContext, node: torch.fx.Node) -> bool:
    """Whether ``node`` reads a tensor evaluated from the weights (it is then evaluated too if it can be)."""
    return any(isinstance(v.param.binding, EvaluatedBinding)
               for parent in node.all_input_nodes for v in _values_in(ctx.env.get(parent))
               if v.param is not None)
