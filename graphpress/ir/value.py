"""Values: the edges of the IR. Every value has a shape and a dtype, and knows who makes and who uses it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import torch

from .parameter import Parameter

if TYPE_CHECKING:
    from .node import Node

__all__ = ["Dim", "Shape", "Value", "SHAPED_LIKE", "SIDE_OUTPUT"]

SHAPED_LIKE = "shaped_like"
"""``meta`` key of a constant the model computes at the size of another value (``zeros_like(x)``): that value,
whose channels the constant shares, since pruning them shrinks what the model computes."""

SIDE_OUTPUT = "side_output"
"""``meta`` key (True) of a value the model computes but no graph output reads: the end of a branch its forward
runs and discards (UperNet's auxiliary head at inference). Its nodes stay in the graph so that passes edit its
weights with the rest; dead-code elimination keeps them and the ONNX emitter leaves them out."""

Dim = Union[int, str]
"""A dimension: a concrete size, or a symbol (e.g. "batch") when the size varies at run time."""

Shape = tuple[Dim, ...]


class Value:
    """One tensor flowing through the graph.

    A value is a graph input, the output of one node (``producer``), or a tensor known ahead of time
    (``param`` is set). ``uses`` lists ``(node, input_index)`` pairs and is maintained by :class:`Node`.
    """

    __slots__ = ("name", "shape", "dtype", "producer", "param", "uses", "meta")

    def __init__(
        self,
        name: str,
        shape: Shape | None = None,
        dtype: torch.dtype | None = None,
        *,
        param: Parameter | None = None,
    ):
        self.name = name
        self.shape: Shape | None = tuple(shape) if shape is not None else None
        self.dtype = dtype
        self.producer: Node | None = None
        self.param = param
        self.uses: list[tuple[Node, int]] = []
        self.meta: dict = {}
        if param is not None and shape is None:
            self.shape, self.dtype = param.shape, param.dtype

    @property
    def is_constant(self) -> bool:
        return self.param is not None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def consumers(self) -> list[Node]:
        seen: dict[int, Node] = {}
        for node, _ in self.uses:
            seen.setdefault(id(node), node)
        return list(seen.values())

    def sync_from_param(self) -> None:
        """Refresh shape and dtype after a pass replaced the parameter's tensor."""
        if self.param is not None:
            self.shape, self.dtype = self.param.shape, self.param.dtype

    def __repr__(self) -> str:
        shape = "?" if self.shape is None else "x".join(str(d) for d in self.shape) or "scalar"
        dtype = str(self.dtype).replace("torch.", "") if self.dtype is not None else "?"
        return f"%{self.name}<{shape}:{dtype}>"
