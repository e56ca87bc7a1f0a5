"""``fold-affine``: fold per-channel affine maps into the Conv/ConvTranspose/Linear next to them. Exact.

A generalization of ``fold-bn`` (which it runs first). Three forms are folded:

* Output side: ``P(x) * s + t`` where ``P`` is a Conv, ConvTranspose or Linear and ``s``/``t`` come from
  constant ``Mul``/``Add``/``Sub``/``Div`` nodes broadcast per output channel (or scalars)::

      W' = W * s (per output channel)        b' = b * s + t          (fold_bn.fold_channel_affine)

* Input side: ``Linear_k(x * g + b)`` where the affine's result feeds only Linears (an RMSNorm's gamma, a
  decomposed LayerNorm's gamma/beta) and ``g``/``b`` broadcast along the last axis::

      W_k' = W_k * g (per input column)      b_k' = b_k + W_k @ b

* A ``LayerNormalization`` node whose output feeds only Linears: its gamma/beta fold in as above and the
  norm's affine becomes the identity (gamma = 1; beta dropped on ONNX, zero on torch).

Why: each fold removes an elementwise pass over an activation (and its constant) at inference time.

Torch models: the forward code cannot be rewritten, so an affine node is removed only when it is a whole
module (e.g. a ``Scale``/``Affine`` module, replaced by ``nn.Identity`` like ``fold-bn`` does with BatchNorm).
An affine written inline in some ``forward`` (``self.weight * x`` in ``LlamaRMSNorm``) is *neutralized*
instead: its module tensor is set to the identity element (ones / zeros) after folding, which keeps the
outputs and the state_dict layout but saves nothing on torch itself (it does once exported to ONNX, where
the following ``fold-affine`` removes multiplications by one). Inline Python literals are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ir import Graph, ModuleBinding, Node, Value
from .base import Pass, PassResult
from .context import PassContext
from .fold_bn import FoldBatchNorm, _bias_value, _out_axis, _scope_is_single_use, fold_channel_affine
from .linear_edits import TensorOwners, constant_is_exclusive, is_linear, keep_output_name, linear_is_editable
from .registry import register_pass

__all__ = ["FoldAffine", "fold_into_linear_inputs"]

_AFFINE_OPS = frozenset({"Mul", "Add", "Sub", "Div"})


@dataclass
class _Affine:
    """``node`` computes ``scale * x + shift`` along one axis of ``x`` (``scale``/``shift``: float64 vectors)."""

    node: Node
    x: Value
    const: Value
    const_first: bool

    def vector(self, axis: int, channels: int) -> torch.Tensor | None:
        """The constant as a float64 vector of ``channels`` entries along ``axis`` of the output, or None."""
        c = self.const.param.data
        out = self.node.outputs[0]
        if out.shape is None or self.x.shape != out.shape or not c.is_floating_point():
            return None
        if c.dtype != self.x.dtype and (c.dim() > 0 or self.node.graph.origin != "torch"):
            return None  # torch promotes non-scalar operands; ONNX requires one dtype
        rank = len(out.shape)
        if c.dim() > rank:
            return None
        shape = [1] * (rank - c.dim()) + list(c.shape)
        axis %= rank
        if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] not in (1, channels):
            return None
        return c.detach().reshape(-1).double().expand(channels).clone()

    def scale_shift(self, axis: int, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        v = self.vector(axis, channels)
        if v is None:
            return None
        one, zero = torch.ones_like(v), torch.zeros_like(v)
        op = self.node.op
        if op == "Mul":
            return v, zero
        if op == "Add":
            return one, v
        if op == "Sub":
            return (-one, v) if self.const_first else (one, -v)
        if (v == 0).any():  # Div
            return None
        return 1.0 / v, zero

    @property
    def neutral(self) -> torch.Tensor:
        """The tensor that makes this node the identity (ones for Mul/Div, zeros for Add/Sub)."""
        c = self.const.param.data
        return torch.ones_like(c) if self.node.op in ("Mul", "Div") else torch.zeros_like(c)


def _as_affine(node: Node) -> _Affine | None:
    if node.domain != "" or node.op not in _AFFINE_OPS or len(node.inputs) != 2 or len(node.outputs) != 1:
        return None
    a, b = node.inputs
    if a is None or b is None or (a.param is None) == (b.param is None):
        return None
    const_first = a.param is not None
    x, const = (b, a) if const_first else (a, b)
    if const.param.is_meta or (node.op == "Div" and const_first):
        return None
    return _Affine(node, x, const, const_first)


def _is_identity(scale: torch.Tensor, shift: torch.Tensor) -> bool:
    return bool((scale == 1).all() and (shift == 0).all())


def fold_into_linear_inputs(graph: Graph, linears: list[Node], scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make each Linear compute ``L(x * scale + shift)`` from ``x`` (scale/shift along its input features).

    ``W' = W * scale`` per input column and ``b' = b + W @ shift`` (computed in float64).
    """
    for lin in linears:
        weight = lin.input(1).param
        w = weight.data
        w64 = w.double()
        weight.data = (w64 * scale.to(w64.device)[None, :]).to(w.dtype).contiguous()
        lin.input(1).sync_from_param()
        if bool((shift != 0).any()):
            bias = _bias_value(graph, lin, w, w.shape[0]).param
            bias.data = (bias.data.double() + w64 @ shift.to(w64.device)).to(w.dtype).contiguous()


@register_pass
class FoldAffine(Pass):
    name = "fold-affine"
    summary = ("Fold BatchNorm, constant per-channel Mul/Add/Sub/Div and LayerNorm/RMSNorm affines into the "
               "adjacent Conv/ConvTranspose/Linear.")
    exact = True

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        nodes_before, params_before = len(graph.nodes), graph.parameter_count()
        bn = FoldBatchNorm().call(graph, ctx)
        self.stats = {"batchnorms_folded": bn.stats["batchnorms_folded"], "into_producer": 0,
                      "into_linears": 0, "norms_folded": 0, "neutralized": 0, "skipped": 0}
        self.owners = TensorOwners(graph)
        for _ in range(16):  # sweeps: a fold can expose another (Add after Mul, a norm's gamma after beta)
            changed = False
            skipped = 0
            for node in list(graph.nodes):
                if node.graph is not graph:
                    continue
                if node.op == "LayerNormalization" and node.domain == "":
                    changed |= self._fold_layernorm(graph, node)
                    continue
                affine = _as_affine(node)
                if affine is None:
                    continue
                done = self._fold_output_side(graph, affine) or self._fold_input_side(graph, affine)
                changed |= done
                skipped += not done and self._is_candidate(affine)
            self.stats["skipped"] = skipped
            if not changed:
                break
        graph.prune_unused_constants()
        stats = dict(self.stats)
        stats["nodes_removed"] = nodes_before - len(graph.nodes)
        stats["parameters_removed"] = params_before - graph.parameter_count()
        modified = bn.modified or any(stats[k] for k in ("into_producer", "into_linears", "norms_folded"))
        return PassResult(graph, modified, stats)

    # -- legality -------------------------------------------------------------------------------------
    @staticmethod
    def _is_candidate(affine: _Affine) -> bool:
        """An affine next to a Conv/Linear that was left alone (reported as skipped)."""
        if torch.equal(affine.const.param.data, affine.neutral):
            return False
        p = affine.x.producer
        near_producer = p is not None and _out_axis(p) is not None
        return near_producer or any(is_linear(n) for n, _ in affine.node.outputs[0].uses)

    def _module_chain(self, graph: Graph, affine: _Affine) -> list[_Affine] | None:
        """The affine nodes of ``affine``'s module when they are all it computes, one after the other."""
        scope = affine.node.scope
        if not scope:
            return None
        members = {id(n) for n in graph.nodes if n.scope == scope or n.scope.startswith(scope + ".")}
        chain, current = [affine], affine.node.outputs[0]
        while len(chain) < len(members):
            if len(current.uses) != 1 or current in graph.outputs:
                return None
            step = _as_affine(current.uses[0][0])
            if step is None or step.x is not current or id(step.node) not in members:
                return None
            chain.append(step)
            current = step.node.outputs[0]
        if {id(a.node) for a in chain} != members or current in graph.outputs:
            return None
        return chain

    def _plan(self, graph: Graph, affine: _Affine) -> tuple[str, list[_Affine]] | None:
        """How the affine node can disappear from the model: ("remove", [it]) on ONNX; on torch
        ("module", chain) when its module computes only this chain (the module becomes nn.Identity), or
        ("neutralize", [it]) when its constant is a module tensor only it reads (set to ones / zeros)."""
        if graph.origin != "torch" or graph.module is None:
            return "remove", [affine]
        chain = self._module_chain(graph, affine)
        if chain is not None:
            return "module", chain
        binding = affine.const.param.binding
        if (isinstance(binding, ModuleBinding) and constant_is_exclusive(graph, affine.const, self.owners)
                and not (affine.node.op == "Sub" and affine.const_first)
                and affine.node.outputs[0] not in graph.outputs):
            return "neutralize", [affine]
        return None

    @staticmethod
    def _compose(chain: list[_Affine], axis: int, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The chain's combined ``scale * x + shift``."""
        scale = torch.ones(channels, dtype=torch.float64)
        shift = torch.zeros(channels, dtype=torch.float64)
        for affine in chain:
            pair = affine.scale_shift(axis, channels)
            if pair is None:
                return None
            scale, shift = scale * pair[0], shift * pair[0] + pair[1]
        return scale, shift

    def _drop(self, graph: Graph, how: str, chain: list[_Affine]) -> None:
        if how == "neutralize":
            chain[0].const.param.data = chain[0].neutral
            self.stats["neutralized"] += 1
            return
        first, out = chain[0], chain[-1].node.outputs[0]
        graph.replace_all_uses(out, first.x)
        keep_output_name(graph, out, first.x)
        for affine in reversed(chain):
            graph.remove(affine.node)
        if how == "module":
            graph.replace_module(first.node.scope, torch.nn.Identity())

    # -- the three folds ------------------------------------------------------------------------------
    def _fold_output_side(self, graph: Graph, affine: _Affine) -> bool:
        producer, x = affine.x.producer, affine.x
        if producer is None or _out_axis(producer) is None or len(x.uses) != 1 or x in graph.outputs:
            return False
        weight, bias = producer.input(1), producer.input(2)
        if not constant_is_exclusive(graph, weight, self.owners):
            return False
        if bias is not None and not constant_is_exclusive(graph, bias, self.owners):
            return False
        if not _scope_is_single_use(graph, producer) or x.shape is None:
            return False
        axis = 1 if producer.op in ("Conv", "ConvTranspose") else len(x.shape) - 1
        channels = weight.param.data.shape[_out_axis(producer)]
        plan = self._plan(graph, affine)
        pair = None if plan is None else self._compose(plan[1], axis, channels)
        if pair is None or (plan[0] == "neutralize" and _is_identity(*pair)):
            return False
        if not _is_identity(*pair):
            fold_channel_affine(graph, producer, *pair)
        self._drop(graph, *plan)
        self.stats["into_producer"] += len(plan[1])
        return True

    def _consuming_linears(self, graph: Graph, value: Value, features: int) -> list[Node] | None:
        """The Linears that are the only readers of ``value`` (as their input), all editable, else None."""
        if not value.uses or value in graph.outputs:
            return None
        linears = []
        for node, index in value.uses:
            if index != 0 or not linear_is_editable(graph, node, self.owners):
                return None
            if node.input(1).param.data.shape[1] != features:
                return None
            linears.append(node)
        return linears

    def _fold_input_side(self, graph: Graph, affine: _Affine) -> bool:
        plan = self._plan(graph, affine)
        if plan is None:
            return False
        out = plan[1][-1].node.outputs[0]
        if out.shape is None or not out.shape or not isinstance(out.shape[-1], int):
            return False
        features = out.shape[-1]
        linears = self._consuming_linears(graph, out, features)
        pair = None if linears is None else self._compose(plan[1], -1, features)
        if pair is None or (plan[0] == "neutralize" and _is_identity(*pair)):
            return False
        fold_into_linear_inputs(graph, linears, *pair)
        self._drop(graph, *plan)
        self.stats["into_linears"] += len(plan[1])
        return True

    def _fold_layernorm(self, graph: Graph, node: Node) -> bool:
        x, gamma, beta = node.input(0), node.input(1), node.input(2)
        y = node.outputs[0]
        if x is None or x.shape is None or gamma is None or gamma.param is None or gamma.param.is_meta:
            return False
        if any(o.uses or o in graph.outputs for o in node.outputs[1:]):
            return False
        rank = len(x.shape)
        if node.attrs.get("axis", -1) % rank != rank - 1 or gamma.param.data.dim() != 1:
            return False
        features = gamma.param.data.shape[0]
        if beta is not None and (beta.param is None or beta.param.is_meta or beta.param.data.shape != (features,)):
            return False
        linears = self._consuming_linears(graph, y, features)
        if linears is None:
            return False
        scale = gamma.param.data.double()
        shift = beta.param.data.double() if beta is not None else torch.zeros_like(scale)
        if _is_identity(scale, shift):
            return False
        torch_model = graph.origin == "torch"
        if torch_model and not (constant_is_exclusive(graph, gamma, self.owners)
                                and (beta is None or constant_is_exclusive(graph, beta, self.owners))):
            return False
        fold_into_linear_inputs(graph, linears, scale, shift)
        ones = torch.ones_like(gamma.param.data)
        if constant_is_exclusive(graph, gamma, self.owners):
            gamma.param.data = ones
        else:
            node.set_input(1, graph.constant(ones, f"{node.name}_scale"))
        if beta is not None:
            if torch_model:
                beta.param.data = torch.zeros_like(beta.param.data)
            else:
                node.set_input(2, None)
                while node.inputs and node.inputs[-1] is None:
                    node.set_inputs(list(node.inputs[:-1]))
        self.stats["norms_folded"] += 1
        return True
