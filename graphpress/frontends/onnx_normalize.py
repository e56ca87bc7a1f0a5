"""Rewriting exporter dialects into the IR's canonical forms, so every pass sees one form of each idea.

* ``Sum(a, b, c, ...)`` becomes a chain of binary ``Add`` (one ``Identity`` for a single input): the
  coupling rules and the fusions know ``Add``.
* ``Gemm(X, B, C?)`` with a constant ``B`` (``transB`` 0 or 1, ``transA`` 0) becomes
  ``graphpress::Linear(X, W[out, in], b?)``, with ``alpha`` folded into W and ``beta`` into b. A ``C`` that
  is not a constant vector over the output features stays as a separate ``Add``.
* ``MatMul(X, W)`` by a constant 2-D ``W[in, out]`` becomes ``Linear(X, W^T)``, and a following ``Add`` of a
  constant ``[out]`` vector (in either operand order) becomes its bias.

The rewritten node keeps the output value (and name) of the last node it replaces, so graph outputs and
readers are untouched, and its ``scope`` names the original ONNX node. A weight read by anything else
is not transposed in place (the other readers keep what they read) nor copied: the Linear reads it
through a transposed view of the same stored tensor, so shared and tied weights stay one tensor when
pruned (see :func:`_weight`).
"""

from __future__ import annotations

import torch

from ..ir import GRAPHPRESS_DOMAIN, DetachedBinding, Graph, Node, Parameter, Value, storage_binding, transposed_binding

__all__ = ["normalize", "sum_to_add", "gemm_to_linear", "matmul_to_linear"]


def _replace(graph: Graph, old: list[Node], new: Node) -> None:
    """Put ``new`` where the last of ``old`` was and drop ``old`` (whose outputs ``new`` took over)."""
    graph.insert_before(old[-1], new)
    for node in old:
        node.detach_inputs()
        graph.nodes.remove(node)
        node.graph = None


def _shared_storage(graph: Graph) -> set[int]:
    """Ids of the stored tensors that more than one node reads (through any constant or view of them)."""
    return {key for key, count in graph.storage_readers().items() if count > 1}


def _uniform(tensor: torch.Tensor) -> bool:
    """All elements equal: the dynamo exporter writes one initializer for every equal constant (the zero
    biases, the unit norm weights of a freshly initialized model), which ties nothing; each reader gets
    its own copy so pruning does not couple unrelated layers through a shared zero vector."""
    flat = tensor.reshape(-1)
    return flat.numel() > 1 and bool((flat == flat[0]).all())


def _weight(graph: Graph, value: Value, tensor: torch.Tensor, shared: set[int], layout: str | None = None) -> Value:
    """A constant holding ``tensor`` for the node being rewritten, which reads ``value``.

    ``layout`` says how ``tensor`` derives from ``value``: "same" (the same data, maybe reshaped to the
    same size), "transposed" (its 2-D transpose), or None (computed from it, e.g. scaled). When that node
    is the only reader of a weight stored as is (not in ``shared``, see :func:`_shared_storage`), ``value``
    itself is edited (keeping its name and key).
    A weight other nodes also read (or a view of one) is never copied when a layout says how to read it:
    the Linear reads the same stored tensor (through a transposed view), so the coupling analysis ties
    every reader and pruning keeps one tensor. Only a computed tensor of a shared weight, or a shared
    vector whose elements are all equal (see :func:`_uniform`), is a copy.
    """
    binding = value.param.binding
    if id(storage_binding(binding)) not in shared and storage_binding(binding) is binding:
        value.param.data = tensor
        value.sync_from_param()
        return value
    if layout == "same" and tuple(tensor.shape) == tuple(value.param.shape) and not _uniform(tensor):
        return value
    if layout == "transposed":
        return graph.add_constant(Parameter(transposed_binding(binding), kind=value.param.kind), f"{value.name}_linear")
    param = Parameter(DetachedBinding(value.param.key, tensor), kind=value.param.kind)
    return graph.add_constant(param, f"{value.name}_linear")


def _bias_vector(value: Value | None, out_features: int) -> torch.Tensor | None:
    """``value`` as a [out_features] vector if it is a constant that broadcasts only along the last axis."""
    if value is None or value.param is None:
        return None
    tensor = value.param.data
    if tensor.numel() == out_features and all(d == 1 for d in tensor.shape[:-1]) and tensor.dim() >= 1 and tensor.shape[-1] == out_features:
        return tensor.reshape(out_features)
    if tensor.numel() == 1:
        return tensor.reshape(1).expand(out_features).clone()
    return None


def sum_to_add(graph: Graph) -> int:
    count = 0
    for node in graph.find("Sum"):
        if node.domain != "":
            continue
        inputs, out = list(node.inputs), node.outputs[0]
        node.outputs = []
        if len(inputs) == 1:
            chain = [Node("Identity", inputs, [out], name=graph.unique_name(f"{node.name}_id"), scope=node.scope)]
        else:
            chain, acc = [], inputs[0]
            for i, term in enumerate(inputs[1:], start=1):
                target = out if i == len(inputs) - 1 else graph.new_value(f"{out.name}_partial", out.shape, out.dtype)
                chain.append(Node("Add", [acc, term], [target], name=graph.unique_name(f"{node.name}_add"), scope=node.scope))
                acc = target
        for new in chain:
            graph.insert_before(node, new)
        node.detach_inputs()
        graph.nodes.remove(node)
        count += 1
    return count


def gemm_to_linear(graph: Graph) -> int:
    count, shared = 0, _shared_storage(graph)
    for node in graph.find("Gemm"):
        a, b, c = node.inputs[0], node.inputs[1], node.input(2)
        if node.domain != "" or b.param is None or node.attrs.get("transA", 0) or b.param.data.dim() != 2:
            continue
        weight = b.param.data if node.attrs.get("transB", 0) else b.param.data.t()
        alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
        weight = (weight * alpha if alpha != 1.0 else weight).contiguous()
        bias = _bias_vector(c, weight.shape[0])
        out = node.outputs[0]
        w_layout = None if alpha != 1.0 else ("same" if node.attrs.get("transB", 0) else "transposed")
        w_value = _weight(graph, b, weight, shared, w_layout)
        inputs = [a, w_value]
        if bias is not None:
            inputs.append(_weight(graph, c, (bias * beta if beta != 1.0 else bias).contiguous(), shared,
                                  "same" if beta == 1.0 else None))
        if c is None or bias is not None:
            linear = Node("Linear", inputs, [out], domain=GRAPHPRESS_DOMAIN, name=graph.unique_name(node.name), scope=node.scope)
            node.outputs = []
            _replace(graph, [node], linear)
        else:  # C is a matrix or computed at run time: Linear, then the scaled C added
            product = graph.new_value(f"{out.name}_linear", None, out.dtype)
            linear = Node("Linear", inputs, [product], domain=GRAPHPRESS_DOMAIN, name=graph.unique_name(node.name), scope=node.scope)
            addend = c
            if beta != 1.0:
                scale = graph.constant(torch.tensor(beta, dtype=c.dtype or torch.float32), f"{node.name}_beta")
                addend = graph.new_value(f"{out.name}_beta_c", c.shape, c.dtype)
                graph.insert_before(node, Node("Mul", [c, scale], [addend], name=graph.unique_name(f"{node.name}_beta"), scope=node.scope))
            add = Node("Add", [product, addend], [out], name=graph.unique_name(f"{node.name}_add"), scope=node.scope)
            node.outputs = []
            graph.insert_before(node, linear)
            _replace(graph, [node], add)
        count += 1
    return count


def matmul_to_linear(graph: Graph) -> int:
    count, shared = 0, _shared_storage(graph)
    for node in graph.find("MatMul"):
        x, w = node.inputs
        if node.domain != "" or w.param is None or w.param.data.dim() != 2:
            continue
        out = node.outputs[0]
        replaced, bias_value, bias = [node], None, None
        readers = out.consumers()
        if len(readers) == 1 and len(out.uses) == 1 and out not in graph.outputs and readers[0].op == "Add" and readers[0].domain == "":
            add = readers[0]
            other = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
            bias = _bias_vector(other, w.param.data.shape[1])
            if bias is not None and add.outputs[0].shape == out.shape:
                replaced, bias_value = [node, add], other
                out = add.outputs[0]
        inputs = [x, _weight(graph, w, w.param.data.t().contiguous(), shared, "transposed")]
        if bias_value is not None:
            inputs.append(_weight(graph, bias_value, bias.contiguous(), shared, "same"))
        linear = Node("Linear", inputs, [out], domain=GRAPHPRESS_DOMAIN, name=graph.unique_name(node.name), scope=node.scope)
        for old in replaced:
            old.outputs = []
        _replace(graph, replaced, linear)
        count += 1
    return count


def normalize(graph: Graph) -> dict[str, int]:
    """Run every rewrite above; returns how many nodes each one rewrote."""
    return {"sum_to_add": sum_to_add(graph), "gemm_to_linear": gemm_to_linear(graph), "matmul_to_linear": matmul_to_linear(graph)}
