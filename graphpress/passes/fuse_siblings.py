"""``fuse-qkv``, ``fuse-gate-up``, ``fuse-siblings``: Linears that read the same input become one Linear. Exact.

    Y_i = X @ W_i^T + b_i  (i = 1..n)   ->   [Y_1 | ... | Y_n] = X @ cat(W_i)^T + cat(b_i), then Split

One GEMM (one weight stream, one launch) instead of n; the outputs are the same numbers up to the GEMM's
summation order. Fusion is structural, never name-based: siblings are float Linears reading one value with
the same input width and dtype, whose weights nothing else reads; a missing bias is a zero bias. What the
siblings feed decides which pass takes them (names appear only in reports):

* ``fuse-qkv``: every sibling's result reaches attention (a ``graphpress::Attention`` node, or a MatMul of
  two activations as in ONNX's softmax chain) before any other Linear: Q/K/V, GQA included ([q | k | v]).
* ``fuse-gate-up``: the siblings' results meet in one elementwise Mul through elementwise ops only (the
  gated MLP's ``act(gate(x)) * up(x)``).
* ``fuse-siblings``: any sibling group.

ONNX: one ``graphpress::Linear`` (written as MatMul/Gemm) and a ``Split`` whose outputs keep the original
names. Torch: the user's forward still calls ``q_proj(x)``, ``k_proj(x)``, ``v_proj(x)``; the three modules
become :class:`~graphpress.backends.fused_linear.SiblingSlice` views of one
:class:`~graphpress.backends.fused_linear.FusedLinear` registered on their common parent. The first call
computes all outputs, the others reuse them when given the same tensor object (else recompute), see that
module for the trade-offs (state_dict layout: :func:`~graphpress.backends.fused_linear.unfuse_linears`).
The same :func:`~graphpress.backends.fused_linear.install_fused` installs quantized Triton fused modules.
"""

from __future__ import annotations

import logging
import os
from typing import ClassVar

import torch

from ..ir import GRAPHPRESS_DOMAIN, Graph, ModuleBinding, Node, Parameter, Value, is_elementwise
from .base import Pass, PassResult
from .context import PassContext
from .linear_edits import TensorOwners, is_linear, linear_is_editable
from .registry import register_pass

__all__ = ["FuseQKV", "FuseGateUp", "FuseSiblings", "sibling_groups", "sibling_role", "fuse_linear_group"]

_ATTENTION_DEPTH = 24   # ops walked from a projection to its attention (reshape, rotary, transpose...)
_GATE_DEPTH = 12        # elementwise ops walked from gate/up to their product (activation decompositions)


def sibling_groups(graph: Graph, owners: TensorOwners | None = None) -> list[list[Node]]:
    """Groups (of two or more, in graph order) of editable float Linears that read the same value."""
    owners = owners or TensorOwners(graph)
    groups: list[list[Node]] = []
    seen: set[int] = set()
    for node in graph.nodes:
        x = node.input(0) if is_linear(node) else None
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        readers = [n for n in x.consumers() if is_linear(n) and n.input(0) is x and linear_is_editable(graph, n, owners)]
        by_kind: dict[tuple, list[Node]] = {}
        for n in readers:
            w = n.input(1).param.data
            by_kind.setdefault((w.shape[1], w.dtype, w.device), []).append(n)
        order = {id(n): i for i, n in enumerate(graph.nodes)}
        groups += [sorted(g, key=lambda n: order[id(n)]) for g in by_kind.values() if len(g) > 1]
    return groups


def _reaches_attention(value: Value) -> bool:
    frontier, seen = [(value, 0)], {id(value)}
    while frontier:
        current, depth = frontier.pop()
        for node in current.consumers():
            if node.op == "Attention" and node.domain == GRAPHPRESS_DOMAIN:
                return True
            if node.op == "MatMul" and node.domain == "" and all(v is not None and v.param is None for v in node.inputs):
                return True
            if is_linear(node) or depth >= _ATTENTION_DEPTH:
                continue
            for out in node.outputs:
                if id(out) not in seen:
                    seen.add(id(out))
                    frontier.append((out, depth + 1))
    return False


def _elementwise_reach(value: Value) -> set[int]:
    """Ids of the elementwise nodes reachable from ``value`` through elementwise ops only."""
    reached: set[int] = set()
    frontier = [(value, 0)]
    while frontier:
        current, depth = frontier.pop()
        for node in current.consumers():
            if not is_elementwise(node.op, node.domain) or id(node) in reached:
                continue
            reached.add(id(node))
            if depth < _GATE_DEPTH:
                frontier.extend((out, depth + 1) for out in node.outputs)
    return reached


def sibling_role(group: list[Node]) -> str:
    """"qkv" (all reach attention), "gate-up" (meet in one Mul through elementwise ops) or "other"."""
    outs = [n.outputs[0] for n in group]
    if all(_reaches_attention(o) for o in outs):
        return "qkv"
    reaches = [_elementwise_reach(o) for o in outs]
    common = set.intersection(*reaches)
    graph_nodes = {id(n): n for n in group[0].graph.nodes} if group[0].graph is not None else {}
    if any(graph_nodes.get(i) is not None and graph_nodes[i].op == "Mul" for i in common):
        return "gate-up"
    return "other"


def _fused_path(graph: Graph, scopes: list[str]) -> str:
    """A fresh attribute on the siblings' common parent: ``parent.fused_q_proj_k_proj_v_proj``."""
    parents = [s.rpartition(".")[0].split(".") if "." in s else [] for s in scopes]
    common: list[str] = []
    for parts in zip(*parents):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    leaves = [s.rpartition(".")[2] for s in scopes]
    base = "fused_" + "_".join(leaves)
    prefix = ".".join(common)
    parent = graph.module.get_submodule(prefix) if prefix else graph.module
    name, k = base, 1
    while hasattr(parent, name):
        name, k = f"{base}_{k}", k + 1
    return f"{prefix}.{name}" if prefix else name


def fuse_linear_group(graph: Graph, group: list[Node]) -> Node:
    """Replace the sibling Linears of ``group`` (graph order) by one Linear and a Split; returns the Linear."""
    from ..backends.fused_linear import FusedLinear, install_fused

    x = group[0].input(0)
    weights = [n.input(1).param.data for n in group]
    sizes = [w.shape[0] for w in weights]
    weight = torch.cat(weights).contiguous()
    bias = None
    if any(n.input(2) is not None for n in group):
        bias = torch.cat([n.input(2).param.data if n.input(2) is not None else weight.new_zeros(s)
                          for n, s in zip(group, sizes)]).contiguous()
    anchor, outputs = group[0], [n.outputs[0] for n in group]
    scope = os.path.commonprefix([n.scope for n in group]).rstrip("._")
    if graph.origin == "torch" and graph.module is not None:
        path = _fused_path(graph, [n.scope for n in group])
        fused = FusedLinear(weight, bias, sizes, names=[n.scope for n in group])
        install_fused(graph.module, [n.scope for n in group], fused, path, sizes)
        w_value = graph.add_constant(Parameter(ModuleBinding(graph.module, f"{path}.weight")))
        b_value = graph.add_constant(Parameter(ModuleBinding(graph.module, f"{path}.bias"))) if bias is not None else None
        scope = path
    else:
        w_value = graph.constant(weight, "fused_weight")
        w_value.param.kind = "parameter"
        b_value = None
        if bias is not None:
            b_value = graph.constant(bias, "fused_bias")
            b_value.param.kind = "parameter"
    linear = graph.make_node("Linear", [x, w_value] + ([b_value] if b_value is not None else []),
                             domain=GRAPHPRESS_DOMAIN, scope=scope, before=anchor, hint="fused_linear")
    linear.outputs[0].shape = tuple(outputs[0].shape[:-1]) + (sum(sizes),) if outputs[0].shape else None
    linear.outputs[0].dtype = outputs[0].dtype
    split_sizes = graph.constant(torch.tensor(sizes, dtype=torch.int64), "split_sizes")
    for n in group:  # the outputs move to the Split, so their names (ONNX) and readers stay
        n.detach_inputs()
        graph.nodes.remove(n)
        n.graph = None
    split = Node("Split", [linear.outputs[0], split_sizes], outputs, {"axis": -1}, scope=scope)
    graph.insert_after(linear, split)
    return linear


def _quantized_sibling_groups(graph: Graph) -> int:
    """How many values feed two or more quantized Linears (``graphpress::QLinear``): siblings this pass
    cannot fuse, because quantization already ran."""
    readers: dict[int, int] = {}
    for node in graph.nodes:
        if node.op == "QLinear" and node.domain == GRAPHPRESS_DOMAIN and node.input(0) is not None:
            readers[id(node.input(0))] = readers.get(id(node.input(0)), 0) + 1
    return sum(count > 1 for count in readers.values())


class _FuseSiblingsBase(Pass):
    """Shared body of the three fusion passes; ``roles`` picks the sibling groups each one takes."""

    roles: ClassVar[frozenset[str]] = frozenset({"qkv", "gate-up", "other"})
    exact = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        nodes_before, params_before = len(graph.nodes), graph.parameter_count()
        fused_groups, linears, skipped = [], 0, 0
        for group in sibling_groups(graph):
            role = sibling_role(group)
            if role not in self.roles:
                skipped += 1
                continue
            fuse_linear_group(graph, group)
            fused_groups.append("+".join(n.scope.rpartition(".")[2] or n.name for n in group))
            linears += len(group)
        graph.prune_unused_constants()
        quantized = _quantized_sibling_groups(graph)
        if quantized:
            logging.getLogger("graphpress").warning(
                "graphpress: %s: %d groups of quantized projections reading one input were left unfused; run the "
                "fusion passes before quantize (fuse-qkv,fuse-gate-up,quantize,...): the fused weight is then "
                "quantized as one layer", self.name, quantized)
        stats = {"groups_fused": len(fused_groups), "linears_fused": linears, "groups_skipped": skipped,
                 "quantized_groups_left": quantized,
                 "gemms_saved": linears - len(fused_groups), "nodes_removed": nodes_before - len(graph.nodes),
                 "parameters_removed": params_before - graph.parameter_count()}
        if fused_groups:
            stats["example"] = fused_groups[0]
        return PassResult(graph, bool(fused_groups), stats)


@register_pass
class FuseQKV(_FuseSiblingsBase):
    name = "fuse-qkv"
    summary = "Fuse the attention projections that read one input (Q/K/V, GQA included) into one Linear + Split."
    roles = frozenset({"qkv"})


@register_pass
class FuseGateUp(_FuseSiblingsBase):
    name = "fuse-gate-up"
    summary = "Fuse a gated MLP's gate and up projections (siblings whose outputs meet in a Mul) into one Linear + Split."
    roles = frozenset({"gate-up"})


@register_pass
class FuseSiblings(_FuseSiblingsBase):
    name = "fuse-siblings"
    summary = "Fuse every group of Linears that read the same input into one Linear + Split."
