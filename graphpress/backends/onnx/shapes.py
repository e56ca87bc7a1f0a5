"""Refreshing every value's shape and dtype with ONNX shape inference.

Passes change parameters (pruning shrinks a weight) and leave the shapes downstream stale. Rather than
re-implementing shape rules for every op, :func:`infer_shapes` writes the graph as ONNX without weight data
(weights become typed graph inputs, so this is cheap for large models and works for parameters on the
meta device), runs ``onnx.shape_inference`` with data propagation, and maps the result back by value name.
Values of ops no ONNX schema knows keep their current shape, which is also given to inference as a hint so
that what follows them can still be inferred. onnxruntime's fused ``com.microsoft`` ops (FusedConv,
FusedMatMul, SkipLayerNormalization, the Gelu family, ...) are sized by standard stand-ins instead (see
:mod:`.shape_proxies`); a graph without them is inferred exactly as before.
"""

from __future__ import annotations

import onnx

from ...errors import BackendError
from ...frontends.onnx_reader import UNKNOWN_OP, set_type
from ...ir import GRAPHPRESS_DOMAIN, Graph, Value
from ...ir.dims import solve_reshape_dims
from .emit import emit_model
from .shape_proxies import replace_with_proxies

__all__ = ["infer_shapes"]


_MAX_ROUNDS = 4  # FusedMatMul stand-ins need their operands' ranks, which a first round may supply


def _opaque_outputs(graph: Graph) -> list[Value]:
    """Outputs of nodes ONNX shape inference cannot see through (custom domains, unknown ops)."""
    return [
        out
        for node in graph.nodes
        if node.meta.get(UNKNOWN_OP) or node.domain not in ("", GRAPHPRESS_DOMAIN)
        for out in node.outputs
        if out.shape is not None or out.dtype is not None
    ]


def _rank_of(graph: Graph):
    """Name -> rank of every value whose shape is known (what FusedMatMul's stand-in needs)."""
    ranks = {v.name: len(v.shape) for v in list(graph.inputs) + list(graph.constants) if v.shape is not None}
    ranks.update({out.name: len(out.shape) for node in graph.nodes for out in node.outputs if out.shape is not None})
    return ranks.get


def infer_shapes(graph: Graph, *, strict: bool = True) -> Graph:
    """Update ``shape`` and ``dtype`` of every value of ``graph`` in place; returns the graph.

    Symbolic dimensions stay strings; a dimension inference cannot size gets a fresh ``unk__`` symbol.
    Raises :class:`BackendError` when ONNX shape inference finds the graph inconsistent (for example a
    pruned weight that no longer matches its input), naming what it found; ``strict=False`` instead keeps
    whatever could be inferred (the ONNX frontend's fallback for files onnxruntime runs but ONNX's
    stricter checker dislikes).
    """
    for value in graph.constants:
        value.sync_from_param()
    waiting = None
    for _ in range(_MAX_ROUNDS):
        before, waiting = waiting, _infer_round(graph, strict)
        if not waiting or waiting == before:
            break  # nothing waits for a rank, or the last round sized none of those that did
    sized = _size_reshape_outputs(graph)
    if sized:
        _infer_round(graph, strict, sized)  # what follows a sized reshape may be sized now too
    return graph


def _size_reshape_outputs(graph: Graph) -> list[Value]:
    """Reshape outputs given the one dim ONNX inference left unknown that their element count fixes
    (``ir.dims.solve_reshape_dims``); returns the values whose shape changed."""
    sized = []
    for node in graph.nodes:
        out = node.outputs[0] if node.op == "Reshape" and node.domain == "" else None
        source = node.input(0) if out is not None else None
        if out is None or source is None or out.shape is None or source.shape is None:
            continue
        _, solved = solve_reshape_dims(source.shape, out.shape)
        if solved != tuple(out.shape):
            out.shape = solved
            sized.append(out)
    return sized


def _infer_round(graph: Graph, strict: bool, hints: list[Value] = ()) -> int:
    """One run of ONNX inference over the graph (``hints``: more values whose shapes it is told); returns how
    many fused nodes had no stand-in yet because an operand's rank was unknown (inferring again may now size
    them)."""
    model = emit_model(graph, with_data=False, hint_values=_opaque_outputs(graph) + list(hints))
    _, waiting = replace_with_proxies(model, _rank_of(graph))
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=strict, data_prop=True)
    except Exception as exc:  # InferenceError, or a C++ RuntimeError on malformed input
        raise BackendError(f"shape inference failed on graph {graph.name!r}: {exc}") from None
    types = {info.name: info.type for info in inferred.graph.value_info}
    types.update({info.name: info.type for info in inferred.graph.output})
    for node in graph.nodes:
        for out in node.outputs:
            found = types.get(out.name)
            if found is None or found.WhichOneof("value") is None:
                continue
            if found.HasField("tensor_type") and not found.tensor_type.HasField("shape") and out.shape is not None:
                # inference knew the dtype but not the rank: keep the shape we had rather than lose it
                probe = Value(out.name)
                set_type(probe, found)
                out.dtype = probe.dtype or out.dtype
                continue
            previous = out.shape
            set_type(out, found)
            out.shape = _keep_known_dims(out.shape, previous)
    return waiting


def _keep_known_dims(inferred: tuple | None, previous: tuple | None) -> tuple | None:
    """Where inference could not size a dim that the graph already knew (a number or a symbol the exporter
    declared, such as "seq"), keep what was known rather than a fresh ``unk__`` symbol."""
    if inferred is None or previous is None or len(inferred) != len(previous):
        return inferred
    return tuple(
        old if isinstance(new, str) and new.startswith("unk__") and not (isinstance(old, str) and old.startswith("unk__")) else new
        for new, old in zip(inferred, previous)
    )
