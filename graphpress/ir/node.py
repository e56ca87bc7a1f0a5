"""Nodes: one operator application. Ops follow ONNX semantics (see :mod:`graphpress.ir.ops`)."""

from __future__ import annotations

from typing import Any, Iterable

from .value import Value

__all__ = ["Node"]


class Node:
    """``outputs = op(inputs, **attrs)``.

    ``inputs`` may contain ``None`` for an omitted optional input (ONNX style). ``scope`` is where the
    node came from in the user's model (a module path such as ``model.layers.3.mlp.down_proj``, or the
    ONNX node name), so errors and reports can point at something the user recognizes.
    """

    __slots__ = ("op", "domain", "name", "attrs", "scope", "meta", "_inputs", "outputs", "graph")

    def __init__(
        self,
        op: str,
        inputs: Iterable[Value | None],
        outputs: Iterable[Value],
        attrs: dict[str, Any] | None = None,
        *,
        name: str = "",
        domain: str = "",
        scope: str = "",
    ):
        self.op = op
        self.domain = domain
        self.name = name
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.scope = scope
        self.meta: dict[str, Any] = {}
        self.graph = None
        self._inputs: list[Value | None] = []
        self.outputs: list[Value] = list(outputs)
        for out in self.outputs:
            out.producer = self
        for value in inputs:
            self._append_input(value)

    @property
    def qualified_op(self) -> str:
        return f"{self.domain}::{self.op}" if self.domain else self.op

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    def _append_input(self, value: Value | None) -> None:
        if value is not None:
            value.uses.append((self, len(self._inputs)))
        self._inputs.append(value)

    def set_input(self, index: int, value: Value | None) -> None:
        old = self._inputs[index]
        if old is not None:
            old.uses.remove((self, index))
        if value is not None:
            value.uses.append((self, index))
        self._inputs[index] = value

    def set_inputs(self, values: Iterable[Value | None]) -> None:
        self.detach_inputs()
        for value in values:
            self._append_input(value)

    def detach_inputs(self) -> None:
        for index, value in enumerate(self._inputs):
            if value is not None:
                value.uses.remove((self, index))
        self._inputs = []

    def input(self, index: int) -> Value | None:
        return self._inputs[index] if index < len(self._inputs) else None

    def params(self) -> list[Value]:
        """Inputs that are constants (weights, biases, shape tensors)."""
        return [v for v in self._inputs if v is not None and v.param is not None]

    def describe(self) -> str:
        where = f" in {self.scope}" if self.scope else ""
        return f"node {self.name or '?'} ({self.qualified_op}){where}"

    def __repr__(self) -> str:
        ins = ", ".join("None" if v is None else f"%{v.name}" for v in self._inputs)
        outs = ", ".join(f"%{v.name}" for v in self.outputs)
        return f"{outs} = {self.qualified_op}({ins})"
