"""Trace a model with many identical blocks by tracing two of them and cloning the second in the IR.

``torch.export`` of a whole 80-layer model takes as long as its layers are many; the coupling analysis needs
only the IR. :func:`trace_repeated_blocks` finds the longest ``nn.ModuleList`` of same-class blocks (a
decoder's ``layers``), traces the model with its first two blocks (Hugging Face's
``config.num_hidden_layers`` and ``layer_types`` are cut to match), then appends copies of block 1's nodes
for blocks 2..L-1, each bound to its own block's weights (``...layers.7.mlp.up_proj.weight``) and reading
the previous copy's output. Values block 1 reads from outside the blocks (rotary tables, the mask) are
shared, as in the real model. A model whose block 1 does not have exactly one input from block 0 and one
output is traced whole instead: the helper never builds a graph it can't vouch for.
"""

from __future__ import annotations

import copy

from torch import nn

from ...frontends.torch_export import trace
from ...ir import Graph, ModuleBinding, Node, Parameter, Value

__all__ = ["trace_repeated_blocks", "find_repeated_blocks"]


def find_repeated_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The path and the ModuleList of the longest run of same-class blocks, or None."""
    best = None
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 2 and len({type(m) for m in module}) == 1:
            if best is None or len(module) > len(best[1]):
                best = (path, module)
    return best


def _set_layers(model: nn.Module, path: str, layers: nn.ModuleList) -> None:
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attr, layers)


def _config_for(model: nn.Module, count: int) -> dict:
    config = getattr(model, "config", None)
    saved = {}
    if config is not None:
        for name in ("num_hidden_layers", "n_layer", "layer_types"):
            value = getattr(config, name, None)
            if value is None:
                continue
            saved[name] = value
            setattr(config, name, value[:count] if isinstance(value, list) else count)
    return saved


def _rebind(binding, root: nn.Module, old_prefix: str | None = None, new_prefix: str | None = None):
    """A copy of ``binding`` on ``root`` (optionally for another block); None if it isn't a module binding."""
    if not isinstance(binding, ModuleBinding):
        return None
    new = copy.copy(binding)
    new.root = root
    if old_prefix is not None and binding.key.startswith(old_prefix):
        new.key = new_prefix + binding.key[len(old_prefix):]
        new.path = new.key.rpartition(".")[0]
    stored = getattr(binding, "stored", None)
    if stored is not None:
        new.stored = _rebind(stored, root, old_prefix, new_prefix)
    return new


def trace_repeated_blocks(model: nn.Module, example_inputs, *, example_kwargs: dict | None = None) -> Graph:
    """Trace ``model`` (bound in place: its tensors are the graph's) reusing one traced block for all."""
    found = find_repeated_blocks(model)
    if found is None:
        return trace(model, example_inputs, example_kwargs=example_kwargs, inplace=True)
    path, layers = found
    saved = _config_for(model, 2)
    _set_layers(model, path, nn.ModuleList(list(layers)[:2]))
    try:
        graph = trace(model, example_inputs, example_kwargs=example_kwargs, inplace=True)
    finally:
        _set_layers(model, path, layers)
        for name, value in saved.items():
            setattr(model.config, name, value)
    graph.module = model
    if not _clone_blocks(graph, model, path, len(layers)):
        return trace(model, example_inputs, example_kwargs=example_kwargs, inplace=True)
    return graph


def _in_block(node: Node, prefix: str) -> bool:
    return node.scope == prefix or node.scope.startswith(prefix + ".")


def _clone_blocks(graph: Graph, model: nn.Module, path: str, count: int) -> bool:
    first, second = f"{path}.0", f"{path}.1"
    block = [n for n in graph.nodes if _in_block(n, second)]
    from_first = {id(out) for n in graph.nodes if _in_block(n, first) for out in n.outputs}
    boundary_in = {id(v): v for n in block for v in n.inputs if v is not None and id(v) in from_first}
    boundary_out = [out for n in block for out in n.outputs
                    if any(not _in_block(user, second) for user, _ in out.uses) or out in graph.outputs]
    if len(boundary_in) != 1 or len(boundary_out) != 1 or not block:
        return False
    source, result = next(iter(boundary_in.values())), boundary_out[0]
    last = graph.nodes.index(block[-1])
    before, after = graph.nodes[:last + 1], graph.nodes[last + 1:]
    consts: dict[int, Value] = {}
    clones: list[Node] = []
    previous = result
    for index in range(2, count):
        prefix = f"{path}.{index}"
        mapping: dict[int, Value] = {id(source): previous}
        for node in block:
            inputs = [None if v is None else mapping.get(id(v)) or _block_constant(graph, model, v, second, prefix,
                                                                                      consts, index) for v in node.inputs]
            outputs = [Value(graph.unique_name(out.name), out.shape, out.dtype) for out in node.outputs]
            clone = Node(node.op, inputs, outputs, copy.deepcopy(node.attrs), domain=node.domain,
                         scope=prefix + node.scope[len(second):])
            for out, new in zip(node.outputs, outputs):
                mapping[id(out)] = new
            graph.append(clone)
            clones.append(clone)
        previous = mapping[id(result)]
    graph.nodes = before + clones + after
    for user, position in list(result.uses):
        if not _in_block(user, second) and user not in clones:
            user.set_input(position, previous)
    graph.outputs = [previous if v is result else v for v in graph.outputs]
    return True


def _block_constant(graph: Graph, model: nn.Module, value: Value, second: str, prefix: str,
                    cache: dict[int, Value], index: int) -> Value:
    """Block ``index``'s own copy of a weight of block 1; other values are shared."""
    param = value.param
    if param is None or not param.key.startswith(second + "."):
        return value
    key = (id(value), index)
    if key not in cache:
        binding = _rebind(param.binding, model, second, prefix)
        cache[key] = value if binding is None else graph.add_constant(Parameter(binding, kind=param.kind))
    return cache[key]


