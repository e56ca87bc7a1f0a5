"""Sizes for the symbolic dims of a graph's inputs, when graphpress must make example inputs itself.

An ONNX file often declares its inputs with symbols (``batch_size``, ``num_channels``, ``height``); the
numeric check after each pass needs concrete inputs that the model actually runs on.  Two sources fix a
symbol's size: a weight it meets (a Conv's input channels, the input width of a Linear, MatMul or Gemm, a
constant it is added to or multiplied with, each possibly behind Casts and Identities), and an exporter's
expression of symbols (``past_sequence_length + sequence_length``), evaluated from the others.  Symbols
nothing fixes share one size, which the caller may vary until the model runs.
"""

from __future__ import annotations

import ast
import operator
from typing import Iterator

from ..ir import GRAPHPRESS_DOMAIN, Graph, Node, Value

__all__ = ["fixed_symbol_sizes", "input_shapes"]

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}
_PASS_THROUGH = ("Cast", "Identity")
_BROADCASTING = ("Add", "Sub", "Mul", "Div")


def _readers(value: Value) -> Iterator[tuple[Node, int]]:
    """The (node, input index) pairs that read ``value``, looking through Cast and Identity."""
    for node, slot in value.uses:
        if node.op in _PASS_THROUGH:
            yield from _readers(node.outputs[0])
        else:
            yield node, slot


def _required_width(node: Node, slot: int, rank: int) -> tuple[int, int] | None:
    """(axis of the input read at ``slot``, size a constant operand forces on it), if the op fixes one."""
    weight = node.input(1) if slot == 0 and len(node.inputs) > 1 else None
    if weight is None or weight.param is None or not weight.shape:
        return None
    if node.op == "Linear" and node.domain == GRAPHPRESS_DOMAIN and len(weight.shape) == 2:
        return rank - 1, int(weight.shape[1])  # W is [out_features, in_features]
    if node.op in ("Conv", "ConvInteger") and rank >= 3 and len(weight.shape) == rank:
        return 1, int(weight.shape[1]) * int(node.attrs.get("group", 1))
    if node.op == "MatMul" and len(weight.shape) >= 2:
        return rank - 1, int(weight.shape[-2])
    if node.op == "Gemm" and rank == 2 and len(weight.shape) == 2:
        return (0 if node.attrs.get("transA", 0) else 1), int(weight.shape[1 if node.attrs.get("transB", 0) else 0])
    return None


def fixed_symbol_sizes(graph: Graph) -> dict[str, int]:
    """Symbols of the graph's input shapes whose size a weight or constant operand fixes."""
    sizes: dict[str, int] = {}
    for value in graph.inputs:
        shape = value.shape or ()
        for node, slot in _readers(value):
            required = _required_width(node, slot, len(shape))
            if required is not None and isinstance(shape[required[0]], str):
                sizes.setdefault(shape[required[0]], required[1])
            if node.op in _BROADCASTING:
                other = node.input(1 - slot) if len(node.inputs) == 2 else None
                if other is not None and other.param is not None and other.shape:
                    offset = len(shape) - len(other.shape)
                    for axis, dim in enumerate(shape):
                        k = axis - offset
                        if isinstance(dim, str) and k >= 0 and int(other.shape[k]) > 1:
                            sizes.setdefault(dim, int(other.shape[k]))
    return sizes


def _evaluate(dim: str, sizes: dict[str, int], free: int) -> int:
    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Name):
            return sizes.get(node.id, free)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(dim)

    if dim in sizes:
        return sizes[dim]
    try:
        return max(1, value(ast.parse(dim, mode="eval")))
    except (SyntaxError, ValueError, ZeroDivisionError):
        return free


def input_shapes(graph: Graph, free: int = 1) -> list[tuple[int, ...]]:
    """A concrete shape per graph input: fixed symbols at their size (:func:`fixed_symbol_sizes`), expressions
    of symbols evaluated, every other symbol ``free``."""
    sizes = fixed_symbol_sizes(graph)
    return [tuple(d if isinstance(d, int) else _evaluate(d, sizes, free) for d in (value.shape or ()))
            for value in graph.inputs]
