"""The graph: an ordered list of nodes over values, plus the parameters and the model they came from.

The node list is kept in topological order: frontends produce it that way and the editing methods
(`insert_before`, `insert_after`, `append`) keep it so, which lets passes walk ``graph.nodes`` front to back
without sorting. :func:`graphpress.ir.verifier.verify` checks this after every pass.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from typing import Any, Iterable, Iterator

import torch

from .node import Node
from .parameter import DetachedBinding, EvaluatedBinding, Parameter, storage_binding
from .value import Shape, Value

__all__ = ["Graph"]


class Graph:
    """A model in graphpress IR.

    ``origin`` is "torch" or "onnx". For a torch model ``module`` is the working copy of the user's
    ``nn.Module`` that parameters are bound to: editing a parameter edits that module. ``opset`` is the
    ONNX opset whose semantics the nodes follow. ``analyses`` caches results of analyses; the pass manager
    clears what a pass does not declare preserved.
    """

    def __init__(self, name: str = "graph", *, origin: str = "torch", opset: int = 18):
        self.name = name
        self.origin = origin
        self.opset = opset
        self.opset_imports: dict[str, int] = {"": opset}
        self.nodes: list[Node] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.constants: list[Value] = []
        self.module: torch.nn.Module | None = None
        self.metadata: dict[str, Any] = {}
        self.analyses: dict[str, Any] = {}
        self._names: set[str] = set()
        self._counter = itertools.count()

    # -- names -----------------------------------------------------------------------------------
    def unique_name(self, hint: str) -> str:
        hint = hint or "v"
        name = hint
        while name in self._names:
            name = f"{hint}_{next(self._counter)}"
        self._names.add(name)
        return name

    def claim_name(self, name: str) -> None:
        self._names.add(name)

    # -- values ----------------------------------------------------------------------------------
    def add_input(self, name: str, shape: Shape | None, dtype: torch.dtype | None) -> Value:
        value = Value(self.unique_name(name), shape, dtype)
        self.inputs.append(value)
        return value

    def new_value(self, hint: str, shape: Shape | None = None, dtype: torch.dtype | None = None) -> Value:
        return Value(self.unique_name(hint), shape, dtype)

    def add_constant(self, param: Parameter, name: str | None = None) -> Value:
        """Register a tensor known ahead of time and return the value that carries it."""
        value = Value(self.unique_name(name or param.key), param=param)
        self.constants.append(value)
        return value

    def constant(self, tensor: torch.Tensor, hint: str = "const") -> Value:
        """A new constant held by the IR itself (shape tensors, scalars, folded results)."""
        name = self.unique_name(hint)
        self._names.discard(name)
        return self.add_constant(Parameter(DetachedBinding(name, tensor), kind="constant"), name)

    def evaluated_constant(self, tensor: torch.Tensor, hint: str, op: str, sources: list[str]) -> Value:
        """A constant computed once by ``op`` from the model tensors ``sources``, which the model recomputes
        in forward (see :class:`EvaluatedBinding`): passes may read it, the coupling analysis keeps its size."""
        name = self.unique_name(hint)
        self._names.discard(name)
        return self.add_constant(Parameter(EvaluatedBinding(name, tensor, op, sources), kind="constant"), name)

    def parameters(self) -> Iterator[Value]:
        """Constant values that are weights or buffers of the model (not shape or scalar constants)."""
        return (v for v in self.constants if v.param is not None and v.param.kind != "constant")

    def prune_unused_constants(self) -> int:
        """Forget constants nothing reads any more; returns how many were dropped."""
        outputs = {id(v) for v in self.outputs}
        kept = [v for v in self.constants if v.uses or id(v) in outputs]
        dropped = len(self.constants) - len(kept)
        self.constants = kept
        return dropped

    # -- nodes -----------------------------------------------------------------------------------
    def _adopt(self, node: Node) -> Node:
        node.graph = self
        if not node.name:
            node.name = self.unique_name(node.op.lower())
        else:
            self.claim_name(node.name)
        for out in node.outputs:
            self.claim_name(out.name)
        return node

    def append(self, node: Node) -> Node:
        self.nodes.append(self._adopt(node))
        return node

    def insert_before(self, anchor: Node, node: Node) -> Node:
        self.nodes.insert(self.nodes.index(anchor), self._adopt(node))
        return node

    def insert_after(self, anchor: Node, node: Node) -> Node:
        self.nodes.insert(self.nodes.index(anchor) + 1, self._adopt(node))
        return node

    def make_node(
        self,
        op: str,
        inputs: Iterable[Value | None],
        n_outputs: int = 1,
        attrs: dict[str, Any] | None = None,
        *,
        domain: str = "",
        scope: str = "",
        before: Node | None = None,
        after: Node | None = None,
        hint: str | None = None,
    ) -> Node:
        """Create a node with fresh output values and place it (at the end, or before/after an anchor)."""
        outputs = [self.new_value(hint or op.lower()) for _ in range(n_outputs)]
        node = Node(op, inputs, outputs, attrs, domain=domain, scope=scope)
        if before is not None:
            return self.insert_before(before, node)
        if after is not None:
            return self.insert_after(after, node)
        return self.append(node)

    def remove(self, node: Node) -> None:
        """Remove a node whose outputs nobody uses any more."""
        for out in node.outputs:
            if out.uses or out in self.outputs:
                raise ValueError(f"cannot remove {node.describe()}: output %{out.name} is still used")
        node.detach_inputs()
        self.nodes.remove(node)
        node.graph = None

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Make every reader of ``old`` (nodes and graph outputs) read ``new`` instead."""
        for node, index in list(old.uses):
            node.set_input(index, new)
        self.outputs = [new if v is old else v for v in self.outputs]

    def producer_map(self) -> dict[int, Node]:
        return {id(out): node for node in self.nodes for out in node.outputs}

    def find(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]

    # -- model-level helpers -----------------------------------------------------------------------
    def replace_module(self, path: str, new_module: torch.nn.Module) -> torch.nn.Module:
        """Swap a submodule of the bound torch model (e.g. a BatchNorm for ``nn.Identity``)."""
        if self.module is None:
            raise ValueError("this graph is not bound to a torch module")
        parent_path, _, attr = path.rpartition(".")
        parent = self.module.get_submodule(parent_path) if parent_path else self.module
        old = getattr(parent, attr)
        setattr(parent, attr, new_module)
        return old

    def storage_readers(self) -> Counter[int]:
        """How many nodes (and graph outputs) read each stored tensor, keyed by ``id`` of its storage binding:
        every constant of it and every layout view of it counts (an initializer read by several nodes, a
        weight read as is and transposed), so a pass can tell whether editing one constant edits others."""
        readers: Counter[int] = Counter()
        for value in self.constants:
            if value.param is not None:
                readers[id(storage_binding(value.param.binding))] += len(value.uses) + (value in self.outputs)
        return readers

    def parameter_count(self) -> int:
        """Stored parameter elements (a packed int4 byte counts once, not as two weights)."""
        import math

        return sum(math.prod(v.param.shape) for v in self.parameters())

    def parameter_bytes(self) -> int:
        """Bytes the parameters take in memory: the figure that quantization and pruning shrink."""
        import math

        return sum(math.prod(v.param.shape) * v.param.dtype.itemsize for v in self.parameters())

    def __deepcopy__(self, memo: dict) -> "Graph":
        """An independent copy (the bound module too), built iteratively: a recursive deepcopy of long
        node/value chains would exceed Python's recursion limit on real models."""
        new = Graph.__new__(Graph)
        memo[id(self)] = new
        plain = {k: v for k, v in self.__dict__.items()
                 if k not in ("nodes", "inputs", "outputs", "constants", "module", "analyses", "metadata")}
        new.__dict__.update(plain)
        new._names = set(self._names)
        new.module = copy.deepcopy(self.module, memo) if self.module is not None else None
        new.metadata = copy.deepcopy(self.metadata, memo)
        new.analyses = {}
        values: dict[int, Value] = {}

        def clone(value: Value | None) -> Value | None:
            if value is None:
                return None
            twin = values.get(id(value))
            if twin is None:
                param = None
                if value.param is not None:
                    param = Parameter(copy.deepcopy(value.param.binding, memo), kind=value.param.kind)
                twin = Value(value.name, value.shape, value.dtype, param=param)
                twin.shape, twin.dtype = value.shape, value.dtype
                twin.meta = dict(value.meta)
                values[id(value)] = twin
            return twin

        new.inputs = [clone(v) for v in self.inputs]
        new.constants = [clone(v) for v in self.constants]
        new.nodes = []
        for node in self.nodes:
            twin = Node(node.op, [clone(v) for v in node.inputs], [clone(v) for v in node.outputs],
                        copy.deepcopy(node.attrs, memo), name=node.name, domain=node.domain, scope=node.scope)
            twin.meta = dict(node.meta)
            twin.graph = new
            new.nodes.append(twin)
        new.outputs = [clone(v) for v in self.outputs]
        return new

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes))

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, origin={self.origin}, {len(self.nodes)} nodes, {len(self.constants)} constants)"
