"""What a lowering rule works with: the IR under construction, the aten node at hand, and helpers.

A rule (see :mod:`.torch_registry`) receives a :class:`LoweringContext` and the FX node it lowers. The
context maps FX nodes to the IR values they became (``env``), reads the node's arguments by schema name
(``bind``) and emits IR nodes that carry the module path of the aten node as ``scope``, its module class in
``meta["module_class"]`` and, unless told otherwise, the shape and dtype torch recorded for the result.
It also makes the constants ONNX-style ops need (int64 shape/axes tensors, shared 0-d scalars) and casts.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx

from ..ir import Graph, Value
from .onnx_dtypes import torch_to_onnx_dtype

__all__ = ["LoweringContext", "shape_of", "module_info"]

def shape_of(tensor: Any) -> tuple:
    """A fake or real tensor's shape as IR dims: ints, or the symbol's name for a dynamic dim."""
    return tuple(d if isinstance(d, int) else str(d) for d in tensor.shape)


def module_info(node: torch.fx.Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    return path, cls_name


class LoweringContext:
    """What a lowering rule needs: the IR under construction, the aten node being lowered, and helpers.

    ``env`` maps each FX node to what it became: a :class:`Value`, a list of values (multi-output ops),
    or a plain Python object (a constant non-tensor input such as ``use_cache=False``).
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.env: dict[torch.fx.Node, Any] = {}
        self.node: torch.fx.Node | None = None
        self._scalars: dict[tuple, Value] = {}
        self.aliases: dict[int, list[str]] = {}  # id(module tensor) -> its names (tied weights)
        self.bound_tensors: dict[int, Value] = {}  # id(module tensor) -> the constant bound to it
        self.evaluate_weights = True  # an op without a rule on weights alone is evaluated once (torch_weight_eval)

    # -- reading the aten node ---------------------------------------------------------------------
    @property
    def scope(self) -> str:
        return module_info(self.node)[0] if self.node is not None else ""

    def describe(self) -> str:
        """``aten.op.overload in module.path (ModuleClass)`` for error messages."""
        path, cls = module_info(self.node)
        where = f" in {path or '<root>'} ({cls.rsplit('.', 1)[-1]})" if cls else ""
        return f"{self.node.target}{where}"

    def bind(self, node: torch.fx.Node) -> dict[str, Any]:
        """The node's arguments by schema name (defaults filled in), FX nodes replaced by what they became."""
        schema = node.target._schema
        bound: dict[str, Any] = {}
        for index, argument in enumerate(schema.arguments):
            if index < len(node.args):
                raw = node.args[index]
            elif argument.name in node.kwargs:
                raw = node.kwargs[argument.name]
            elif argument.has_default_value():
                raw = argument.default_value
            else:
                raw = None
            bound[argument.name] = torch.fx.node.map_arg(raw, lambda n: self.env[n])
        return bound

    def out_meta(self, index: int | None = None) -> torch.Tensor:
        val = self.node.meta["val"]
        return val[index] if index is not None else val

    # -- building IR -------------------------------------------------------------------------------
    def emit(
        self,
        op: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any] | None = None,
        *,
        domain: str = "",
        like: Value | None = None,
        shape: tuple | None = None,
        dtype: torch.dtype | None = None,
        n_outputs: int = 1,
    ) -> Value | list[Value]:
        """Append one IR node. Output shape/dtype: explicit, else ``like``'s, else the aten node's result."""
        node = self.graph.make_node(op, inputs, n_outputs, attrs, domain=domain, scope=self.scope,
                                    hint=self.node.name)
        path, cls = module_info(self.node)
        node.meta["module_class"] = cls
        node.meta["aten"] = str(self.node.target)
        for index, out in enumerate(node.outputs):
            if shape is not None or like is not None:
                out.shape = tuple(shape) if shape is not None else like.shape
                out.dtype = dtype or (like.dtype if like is not None else None)
            else:
                meta = self.out_meta(index if n_outputs > 1 else None)
                out.shape, out.dtype = shape_of(meta), dtype or meta.dtype
        return node.outputs if n_outputs > 1 else node.outputs[0]

    def const(self, data: Any, dtype: torch.dtype | None = None, hint: str = "const") -> Value:
        tensor = data if isinstance(data, torch.Tensor) else torch.tensor(data, dtype=dtype)
        return self.graph.constant(tensor if dtype is None else tensor.to(dtype), hint)

    def ints(self, values: Sequence[int], hint: str = "ints") -> Value:
        """A 1-D int64 constant (shapes, axes, starts/ends: ONNX takes these as tensors)."""
        return self.const(torch.tensor(list(values), dtype=torch.int64), hint=hint)

    def scalar(self, number: float | int | bool, dtype: torch.dtype) -> Value:
        """A 0-d constant, shared between every use of the same number and dtype."""
        key = (type(number), number, dtype)
        if key not in self._scalars:
            self._scalars[key] = self.const(torch.tensor(number, dtype=dtype), hint="scalar")
        return self._scalars[key]

    def tensor(self, x: Value | float | int | bool, dtype: torch.dtype) -> Value:
        """``x`` as a value of ``dtype``: numbers become scalar constants, values are cast when needed."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        return self.scalar(x, dtype)

    def reshape(self, x: Value, shape: Sequence[int]) -> Value:
        """``x`` reshaped to ``shape`` (known numbers, no -1), with its shape recorded."""
        shape = tuple(shape)
        return self.emit("Reshape", [x, self.ints(list(shape), hint="shape")], shape=shape, dtype=x.dtype)

    def slice_axis(self, x: Value, axis: int, start: int, end: int) -> Value:
        """``x`` restricted to ``[start, end)`` on ``axis`` (both known numbers), with its shape recorded."""
        shape = tuple(end - start if d == axis else s for d, s in enumerate(x.shape))
        return self.emit("Slice", [x, self.ints([start]), self.ints([end]), self.ints([axis])], shape=shape,
                         dtype=x.dtype)

    def cast(self, value: Value, dtype: torch.dtype) -> Value:
        if value.dtype == dtype:
            return value
        if value.param is not None and value.param.kind == "constant" and not value.param.is_meta:
            return self.const(value.param.data.to(dtype), hint=value.name)
        return self.emit("Cast", [value], {"to": torch_to_onnx_dtype(dtype)}, like=value, dtype=dtype)
