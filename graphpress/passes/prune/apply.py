"""Apply a pruning decision to the IR: slice weights, shrink value shapes, fix shape-carrying inputs.

The decision is a keep mask over channel ids (from :meth:`CouplingResult.keep_ids`). Weights are sliced
through their bindings, so a torch-origin graph edits the working copy of the user's module and an
ONNX-origin graph edits its initializers; tied weights stay one tensor. Then every value's labeled axes
shrink, and the inputs and attributes that spell sizes out are rewritten from the new shapes: Reshape and
Expand shape constants, Resize sizes, Split sizes, Slice bounds, a grouped Conv's ``group`` and GroupNorm's
``num_groups``. (Module attributes and Hugging Face configs are the torch backend's job: see
:mod:`graphpress.backends.hf_fixups`.)
"""

from __future__ import annotations

import numpy as np
import torch

from ...analysis.coupling import CouplingResult
from ...ir import Graph, ModuleBinding, Node, Value, storage_binding

__all__ = ["apply_keep_mask"]


def _slice_weights(result: CouplingResult, keep_id: np.ndarray) -> int:
    """Slice every stored tensor once. Its layouts (a weight read as is and transposed) share ids, so the
    axes of the first layout say it all; every constant of every layout then gets the sliced tensor."""
    by_tensor: dict[int, dict[str, list]] = {}
    for (tensor_key, axis), entry in result.state.param_axes.items():
        by_tensor.setdefault(tensor_key[0], {}).setdefault(tensor_key[1], []).append((axis, entry))
    changed = 0
    for layouts in by_tensor.values():
        entries = next(iter(layouts.values()))
        values = entries[0][1].values
        data = values[0].param.data
        new = data
        for axis, entry in entries:
            mask = keep_id[entry.ids]
            if not mask.all():
                new = new.index_select(axis, torch.as_tensor(np.flatnonzero(mask), device=new.device))
        if new is data:
            continue
        changed += 1
        readers = list(dict.fromkeys(v for group in layouts.values() for _, e in group for v in e.values))
        _store(readers, new.contiguous())
    return changed


def _store(values: list[Value], tensor: torch.Tensor) -> None:
    """Write a sliced weight (in ``values[0]``'s layout) to every constant holding it, keeping tied module
    attributes one object; views of the stored tensor in another layout see it through their binding."""
    first = values[0].param
    first.data = tensor
    shared = storage_binding(first.binding).get()
    for value in values[1:]:
        binding = storage_binding(value.param.binding)
        if binding.get() is shared:
            continue
        if isinstance(binding, ModuleBinding) and isinstance(shared, torch.nn.Parameter):
            setattr(binding.owner, binding.attr, shared)
        else:
            binding.set(shared)
    for value in values:
        value.sync_from_param()


def _shrink_values(result: CouplingResult, keep_id: np.ndarray) -> dict[Value, tuple]:
    """New shapes of non-constant values; returns the old shapes of those that changed."""
    old: dict[Value, tuple] = {}
    for value, labels in result.state.labels.items():
        if value.param is not None or value.shape is None:
            continue
        shape = list(value.shape)
        for axis, ids in enumerate(labels):
            if ids is not None:
                shape[axis] = int(keep_id[ids].sum())
        if tuple(shape) != tuple(value.shape):
            old[value] = value.shape
            value.shape = tuple(shape)
    return old


def _set_ints(graph: Graph, node: Node, index: int, ints: list[int], hint: str) -> None:
    node.set_input(index, graph.constant(torch.tensor(ints, dtype=torch.int64), hint))


_SHAPE_INPUT = {"Reshape": 1, "Expand": 1, "Resize": 3, "ConstantOfShape": 0}


def _shape_source(node: Node, slot: int) -> tuple[Node, int]:
    """Follow input ``slot`` of ``node`` back through single-use Cast/Identity nodes (the shape arithmetic
    exporters emit); returns the node and input slot that read the value the chain starts from."""
    value = node.input(slot)
    while (value.producer is not None and value.producer.op in ("Cast", "Identity")
           and len(value.consumers()) == 1):
        node, slot = value.producer, 0
        value = node.input(0)
    return node, slot


def _shape_pieces(reader: Node, index: int) -> list[tuple[Node, int, int]] | None:
    """Where each entry of the shape tensor input ``index`` of ``reader`` holds (past any Casts: see
    :func:`_shape_source`) is spelled out: ``(reader, input index, position)`` of a constant, or None for an
    entry computed at run time.  A constant shape is one piece; a computed one is followed into a Concat of
    1-D pieces of known length (tf2onnx's ``concat(gather(shape(x), dims), [C])``).  None when neither."""
    source = reader.input(index)
    if source.param is not None:
        return [(reader, index, k) for k in range(int(np.prod(source.shape or (1,))))]
    concat = source.producer
    if concat is None or concat.op != "Concat":
        return None
    entries: list = []
    for piece_index, piece in enumerate(concat.inputs):
        if piece is None or piece.shape is None or len(piece.shape) != 1 or not isinstance(piece.shape[0], int):
            return None
        reader, index = _shape_source(concat, piece_index)
        constant = reader.input(index).param is not None
        entries += [(reader, index, k) if constant else None for k in range(int(piece.shape[0]))]
    return entries


def _fix_shape_input(graph: Graph, node: Node, old: dict[Value, tuple]) -> None:
    """Reshape/Expand/Resize: rewrite explicit sizes of axes that shrank (0 and -1 entries are left alone),
    in the shape constant or in the constant pieces of a shape computed at run time."""
    out = node.outputs[0]
    target_slot = _SHAPE_INPUT[node.op]
    if out not in old or node.input(target_slot) is None:
        return
    chain_reader, chain_slot = _shape_source(node, target_slot)
    pieces = _shape_pieces(chain_reader, chain_slot)
    if pieces is None:
        return
    before, after = old[out], out.shape
    offset = len(after) - len(pieces)
    edits: dict[tuple[int, int], tuple[Node, int, list[int]]] = {}
    for k, piece in enumerate(pieces):
        axis = k + offset
        if piece is None or axis < 0 or before[axis] == after[axis]:
            continue
        reader, index, position = piece
        if (id(reader), index) not in edits:
            data = reader.input(index).param.data
            edits[(id(reader), index)] = (reader, index, [int(v) for v in data.reshape(-1).tolist()])
        entries = edits[(id(reader), index)][2]
        if entries[position] == before[axis]:
            entries[position] = int(after[axis])
    concat = chain_reader.input(chain_slot).producer
    if concat is not None and len(concat.outputs[0].consumers()) > 1:  # the shape is shared: edit a copy
        # (a constant behind a Cast inside it would change for every reader: left for the run-time check)
        edits = {key: edit for key, edit in edits.items() if edit[0] is concat}
        if edits:
            private = _private_concat(graph, concat, chain_reader, chain_slot)
            edits = {key: (private, index, entries) for key, (_, index, entries) in edits.items()}
    for reader, index, entries in edits.values():
        data = reader.input(index).param.data  # a new constant: the old one may be read elsewhere
        reader.set_input(index, graph.constant(torch.tensor(entries, dtype=data.dtype).reshape(data.shape),
                                               f"{node.name}_shape"))


def _private_concat(graph: Graph, concat: Node, reader: Node, slot: int) -> Node:
    """A copy of a shape Concat that other readers share (one shape for the q, k and v reshapes, say), read
    by ``reader`` alone, so that editing it leaves the others' shapes as they are."""
    copy = graph.make_node("Concat", list(concat.inputs), 1, dict(concat.attrs), after=concat,
                           hint=concat.outputs[0].name)
    copy.outputs[0].shape, copy.outputs[0].dtype = concat.outputs[0].shape, concat.outputs[0].dtype
    reader.set_input(slot, copy.outputs[0])
    if not concat.outputs[0].uses and concat.outputs[0] not in graph.outputs:
        graph.remove(concat)
    return copy


def _fix_split(graph: Graph, node: Node, old: dict[Value, tuple]) -> None:
    if not any(out in old for out in node.outputs):
        return
    axis = int(node.attrs.get("axis", 0)) % len(node.outputs[0].shape)
    sizes = [int(out.shape[axis]) for out in node.outputs]
    if node.input(1) is not None:
        _set_ints(graph, node, 1, sizes, f"{node.name}_split")
    elif "split" in node.attrs:
        node.attrs["split"] = sizes
    elif len(set(sizes)) > 1:
        # Equal pieces (opset 18's num_outputs, or no sizes at all) whose widths pruning made unequal: the
        # sizes become an explicit input, which replaces num_outputs (the two may not appear together).
        node.attrs.pop("num_outputs", None)
        node.set_inputs([node.input(0), graph.constant(torch.tensor(sizes, dtype=torch.int64), f"{node.name}_split")])


def _fix_slice(graph: Graph, node: Node, result: CouplingResult, keep_id: np.ndarray) -> None:
    labels = result.state.labels.get(node.input(0))
    if not labels or node.input(1) is None or node.input(2) is None \
            or any(v is not None and v.param is None for v in node.inputs[1:4]):
        return  # bounds or axes computed at run time: the coupling froze every channel such a slice reads
    starts = [int(v) for v in node.input(1).param.data.reshape(-1).tolist()]
    ends = [int(v) for v in node.input(2).param.data.reshape(-1).tolist()]
    axes_value = node.input(3)
    axes = [int(v) for v in axes_value.param.data.reshape(-1).tolist()] if axes_value is not None else \
        list(range(len(starts)))
    changed = False
    for k, axis in enumerate(axes):
        ids = labels[axis % len(labels)]
        if ids is None:
            continue
        kept = keep_id[ids]
        if kept.all():
            continue
        start, end, _ = slice(starts[k], ends[k]).indices(len(ids))
        starts[k], ends[k] = int(kept[:start].sum()), int(kept[:end].sum())
        changed = True
    if changed:
        _set_ints(graph, node, 1, starts, f"{node.name}_starts")
        _set_ints(graph, node, 2, ends, f"{node.name}_ends")


def apply_keep_mask(graph: Graph, result: CouplingResult, keep_id: np.ndarray) -> dict[str, int]:
    """Prune ``graph`` in place to the ids ``keep_id`` keeps; returns counts for the pass statistics."""
    weights = _slice_weights(result, keep_id)
    old = _shrink_values(result, keep_id)
    for node in list(graph.nodes):
        if node.op in _SHAPE_INPUT and node.domain == "":
            _fix_shape_input(graph, node, old)
        elif node.op == "Split" and node.domain == "":
            _fix_split(graph, node, old)
        elif node.op == "Slice" and node.domain == "":
            _fix_slice(graph, node, result, keep_id)
        for attr, ids in result.state.node_ids.get(node, {}).items():
            if attr in ("group", "num_groups"):
                node.attrs[attr] = int(keep_id[ids].sum())
    graph.prune_unused_constants()
    return {"weights_sliced": weights, "values_reshaped": len(old)}
