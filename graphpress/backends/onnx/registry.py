"""How IR ops that ONNX does not have become ONNX nodes: a registry of emitters and the context they write to.

Default-domain nodes are printed as they are. A macro op (``graphpress::Linear``, ``graphpress::Attention``)
or a later one (``graphpress::QLinear`` -> ``com.microsoft::MatMulNBits``) registers a function that expands
one IR node into ONNX nodes through an :class:`EmitContext`::

    @register_emitter("graphpress", "QLinear")
    def emit_qlinear(ctx: EmitContext, node: Node) -> None:
        ctx.require_domain("com.microsoft", 1)
        ctx.add_node("MatMulNBits", [ctx.name(x), ...], [ctx.name(node.outputs[0])], domain="com.microsoft", K=..., N=...)

The context hands out names (IR value names are kept; helper values get fresh ones), turns constants into
initializers on first use (or into typed graph inputs when only shapes are wanted, see ``with_data``), and
keeps one initializer per (value, layout); a weight read transposed and plain is written once, the other
layout read through a ``Transpose`` node.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

import onnx

from ...errors import BackendError
from ...frontends.onnx_attrs import python_to_attribute
from ...frontends.onnx_dtypes import tensor_to_proto, torch_to_onnx_dtype
from ...frontends.onnx_reader import FILLED
from ...ir import Graph, Node, Value

__all__ = ["EmitContext", "Emitter", "register_emitter", "emitter_for"]

Emitter = Callable[["EmitContext", Node], None]
_EMITTERS: dict[tuple[str, str], Emitter] = {}

# In shape-only emission these small constants still carry data: shape inference needs their values
# (Reshape targets, Slice bounds, axes) to size what follows.
_SHAPE_CONSTANT_MAX_ELEMENTS = 64
_SHAPE_INDEX_MAX_ELEMENTS = 4096  # integer index tensors (Gather/Slice arguments); packed weights are larger


def register_emitter(domain: str, op: str) -> Callable[[Emitter], Emitter]:
    """Decorator: make ``fn(ctx, node)`` the way ``domain::op`` nodes are written to ONNX."""

    def decorate(fn: Emitter) -> Emitter:
        _EMITTERS[(domain, op)] = fn
        return fn

    return decorate


def emitter_for(domain: str, op: str) -> Emitter | None:
    return _EMITTERS.get((domain, op))


class EmitContext:
    """The ONNX graph under construction for one :func:`to_onnx` call."""

    def __init__(self, graph: Graph, opset: int, *, with_data: bool = True):
        self.graph = graph
        self.opset = opset
        self.with_data = with_data
        self.int8_compute = False  # MatMulNBits accuracy_level 4 instead of 0 (see to_onnx)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.weight_inputs: list[onnx.ValueInfoProto] = []
        self.domains: dict[str, int] = {}
        self._taken: set[str] = {v.name for v in graph.inputs} | {v.name for v in graph.constants}
        self._taken |= {out.name for node in graph.nodes for out in node.outputs}
        self._emitted: dict[tuple[int, bool], str] = {}
        self._by_source: dict[tuple[str, bool], list[tuple[torch.Tensor, str]]] = {}
        self._counter = 0

    # -- names ---------------------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A new name for a helper value, distinct from every IR value name."""
        while True:
            self._counter += 1
            name = f"{hint}__gp{self._counter}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def name(self, value: Value | None) -> str:
        """The ONNX name of an IR value ("" for an omitted optional input); writes constants on first use."""
        if value is None:
            return ""
        if value.param is not None:
            return self.weight(value, transposed=False)
        return value.name

    def require_domain(self, domain: str, version: int) -> None:
        self.domains[domain] = max(version, self.domains.get(domain, 0))

    # -- constants -----------------------------------------------------------------------------------
    def weight(self, value: Value, *, transposed: bool) -> str:
        """Name of ``value`` (a 2-D weight when ``transposed``) as an initializer, or as a Transpose of it
        when it is computed at run time. The first layout written takes the value's own name."""
        if value.param is None:
            if not transposed:
                return value.name
            return self.add_node("Transpose", [value.name], hint=f"{value.name}_t", perm=[1, 0])[0]
        key = (id(value), transposed)
        if key not in self._emitted:
            tensor = value.param.data
            if transposed:
                if tensor.dim() != 2:
                    raise BackendError(f"constant %{value.name} of shape {tuple(tensor.shape)} is not a 2-D weight")
                tensor = tensor.t()
            self._emitted[key] = self._shared(value, transposed, tensor) or self._relaid(value, transposed, tensor) \
                or self._filled(value, tensor) or self._write_weight(value, transposed, tensor)
        return self._emitted[key]

    def _filled(self, value: Value, tensor: torch.Tensor) -> str | None:
        """``ConstantOfShape`` again for a constant the file wrote that way, while its elements are all equal
        (the onnx model zoo's weight-stripped files: 60 M floats of AlexNet would otherwise be written out)."""
        if not value.meta.get(FILLED) or not tensor.is_floating_point() or tensor.numel() < 2 \
                or tensor.device.type == "meta":  # integer fills stay initializers: shape inference reads them
            return None
        first = tensor.reshape(-1)[:1]
        if not torch.equal(tensor, first.expand_as(tensor)):
            return None
        shape = self.constant(torch.tensor(list(tensor.shape), dtype=torch.int64), f"{value.name}_shape")
        return self.add_node("ConstantOfShape", [shape], [self._own_name(value)], hint=value.name,
                             value=first.clone())[0]

    def _relaid(self, value: Value, transposed: bool, tensor: torch.Tensor) -> str | None:
        """A ``Transpose`` of the initializer already written for the other layout of the same tensor, if
        any: a tied embedding is read by Gather as is and by the LM head transposed, and writing both
        layouts would store it twice (onnxruntime folds the Transpose when it loads the model)."""
        name = self._written(value, not transposed, tensor.t()) if tensor.dim() == 2 else None
        return self.add_node("Transpose", [name], hint=f"{name}_t", perm=[1, 0])[0] if name else None

    def _shared(self, value: Value, transposed: bool, tensor: torch.Tensor) -> str | None:
        """The initializer already written for an equal tensor of the same source parameter, if any.

        A file's initializer read by two nodes (shared or tied weights) becomes one IR constant per
        reader when the frontend turns each reader into a Linear; while pruning keeps them equal, they are
        written back as the one initializer they were, so the output does not grow."""
        return self._written(value, transposed, tensor)

    def _written(self, value: Value, transposed: bool, tensor: torch.Tensor) -> str | None:
        """The name of an initializer written from ``value``'s source parameter in that layout and equal to
        ``tensor`` (real data only: meta tensors compare nothing)."""
        for other, name in self._by_source.get((value.param.key, transposed), ()):
            if other.shape == tensor.shape and other.dtype == tensor.dtype and "meta" not in \
                    (other.device.type, tensor.device.type) and torch.equal(other, tensor):
                return name
        return None

    def _own_name(self, value: Value) -> str:
        """``value``'s own name for its first written layout, a fresh one for a second (its transpose)."""
        return value.name if not any(k[0] == id(value) for k in self._emitted) else self.fresh(value.name)

    def _write_weight(self, value: Value, transposed: bool, tensor: torch.Tensor) -> str:
        name = self._own_name(value)
        self._write_constant(name, tensor)
        self._by_source.setdefault((value.param.key, transposed), []).append((tensor, name))
        return name

    def constant(self, tensor: torch.Tensor, hint: str) -> str:
        """A helper constant (a scale, a shape, a packed weight) written as an initializer (as a typed
        graph input when emitting for shapes only and it is large or on the meta device)."""
        name = self.fresh(hint)
        self._write_constant(name, tensor)
        return name

    def _write_constant(self, name: str, tensor: torch.Tensor) -> None:
        small = tensor.numel() <= _SHAPE_CONSTANT_MAX_ELEMENTS or (
            not tensor.is_floating_point() and tensor.numel() <= _SHAPE_INDEX_MAX_ELEMENTS
        )
        if tensor.device.type == "meta" and self.with_data:
            raise BackendError(
                f"constant %{name} is on the meta device and has no data; materialize the model's weights "
                "before writing ONNX (infer_shapes works without them)"
            )
        if self.with_data or (small and tensor.device.type != "meta"):
            self.initializers.append(tensor_to_proto(tensor, name))
        else:
            self.weight_inputs.append(
                onnx.helper.make_tensor_value_info(name, torch_to_onnx_dtype(tensor.dtype), list(tensor.shape))
            )

    # -- nodes ---------------------------------------------------------------------------------------
    def add_node(
        self,
        op: str,
        inputs: list[str],
        outputs: list[str] | None = None,
        *,
        domain: str = "",
        hint: str | None = None,
        attr_types: dict[str, int] | None = None,
        **attrs: Any,
    ) -> list[str]:
        """Append an ONNX node; returns its output names (one fresh name when ``outputs`` is None)."""
        outputs = outputs if outputs is not None else [self.fresh(hint or op.lower())]
        proto = onnx.helper.make_node(op, inputs, outputs, name=self.fresh(hint or op.lower()), domain=domain)
        types = attr_types or {}
        proto.attribute.extend(python_to_attribute(k, v, types.get(k)) for k, v in attrs.items())
        self.nodes.append(proto)
        return outputs
