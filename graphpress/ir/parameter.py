"""Tensors with data: weights, buffers and constants, and where each one lives in the user's model.

A :class:`Parameter` is how the IR holds any tensor known before run time. Its :class:`Binding` ties it to
its source (an attribute of a submodule of the user's ``nn.Module``, or an ONNX initializer), so a pass that
edits ``param.data`` edits the model a backend hands back, and a person reading the IR sees where the tensor
came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, runtime_checkable

import torch

__all__ = ["Binding", "ModuleBinding", "drop_derived_caches", "DetachedBinding", "EvaluatedBinding", "TransposedBinding",
           "Parameter", "model_sources", "storage_binding", "transposed_binding"]


@runtime_checkable
class Binding(Protocol):
    """Where a tensor lives. ``key`` is what a person or a checkpoint calls it."""

    key: str

    def get(self) -> torch.Tensor: ...

    def set(self, tensor: torch.Tensor) -> None: ...


class DetachedBinding:
    """A tensor held by the IR itself (ONNX initializers, folded constants)."""

    def __init__(self, key: str, tensor: torch.Tensor):
        self.key = key
        self._tensor = tensor

    def get(self) -> torch.Tensor:
        return self._tensor

    def set(self, tensor: torch.Tensor) -> None:
        self._tensor = tensor

    def __repr__(self) -> str:
        return f"DetachedBinding({self.key!r})"


class EvaluatedBinding(DetachedBinding):
    """A tensor computed once from the model's own weights, which the model itself recomputes from them in
    forward: the frontend evaluates what an op without an IR form computes from weights alone (torch's
    orthogonal parametrization: ``linalg_householder_product``, ``matrix_exp``), and ``fold-constants``
    precomputes ops on module weights.

    ``sources`` are the state_dict names it came from and ``op`` the op that made it. The IR may read it, but
    no pass may reshape it (the model would go on computing the old sizes from ``sources``): the coupling
    analysis freezes its channels, naming ``op``.
    """

    def __init__(self, key: str, tensor: torch.Tensor, op: str, sources: list[str]):
        super().__init__(key, tensor)
        self.op = op
        self.sources = list(sources)

    def __repr__(self) -> str:
        return f"EvaluatedBinding({self.key!r}, by {self.op} from {', '.join(self.sources)})"


def model_sources(params: Iterable[Parameter]) -> list[str]:
    """State-dict names of the model tensors behind ``params``: module-bound ones, and those an evaluated
    tensor was computed from (graph-made constants and ONNX initializers name none)."""
    names: dict[str, None] = {}
    for param in params:
        binding = param.binding
        if isinstance(binding, EvaluatedBinding):
            names.update(dict.fromkeys(binding.sources))
        elif isinstance(storage_binding(binding), ModuleBinding):
            names[param.key] = None
    return list(names)


class TransposedBinding:
    """A 2-D tensor of another binding presented transposed: the IR's view of one stored weight that a file
    reads in two layouts (an initializer read by ``Gather`` and, through ``Transpose``, by ``MatMul``; a
    ``MatMul`` weight ``[in, out]`` that is also read as is). Reading gives ``stored.get().t()``, assigning
    stores the transpose, so every reader keeps seeing one tensor and a pass that edits it edits them all.
    """

    layout = "transposed"

    def __init__(self, stored: Binding):
        self.key = stored.key
        self.stored = stored

    def get(self) -> torch.Tensor:
        return self.stored.get().t()

    def set(self, tensor: torch.Tensor) -> None:
        self.stored.set(tensor.t().contiguous())

    def __repr__(self) -> str:
        return f"TransposedBinding({self.key!r})"


def storage_binding(binding: Binding) -> Binding:
    """The binding that holds the tensor behind ``binding`` (itself unless it presents another binding's
    tensor in another layout, as :class:`TransposedBinding` does)."""
    while getattr(binding, "stored", None) is not None:
        binding = binding.stored
    return binding


def transposed_binding(binding: Binding) -> Binding:
    """A binding reading ``binding``'s 2-D tensor transposed; the transpose of a transposed view is the
    stored binding itself, so layouts compose instead of stacking."""
    if getattr(binding, "layout", "") == "transposed" and getattr(binding, "stored", None) is not None:
        return binding.stored
    return TransposedBinding(binding)


def drop_derived_caches(module: torch.nn.Module) -> None:
    """Empty ``module``'s plain-dict attributes that hold only (non-parameter) tensors.

    Some models cache values derived from their parameters in such a dict on the first evaluation-mode
    forward (timm's ``attention_bias_cache`` in LeViT, TinyViT, EfficientFormer, EfficientViT) and read the
    cache from then on; once a pass replaces one of those parameters the cache is stale, and an edited model
    would go on computing with the old values (and, pruned, with the old head count) until put in training
    mode.  Their forward refills the cache.  Private attributes (``_parameters``, ``_buffers``) are left alone.
    """
    for name, value in vars(module).items():
        if (not name.startswith("_") and type(value) is dict and value
                and all(isinstance(v, torch.Tensor) and not isinstance(v, torch.nn.Parameter) for v in value.values())):
            value.clear()


class ModuleBinding:
    """A parameter or buffer of a submodule: ``root.get_submodule(path).<attr>``.

    Setting it replaces the tensor on the module (keeping it an ``nn.Parameter`` when it was one), which
    is how shape-changing edits (pruning) reach the user's model.
    """

    def __init__(self, root: torch.nn.Module, key: str):
        self.root = root
        self.key = key
        path, _, self.attr = key.rpartition(".")
        self.path = path

    @property
    def owner(self) -> torch.nn.Module:
        return self.root.get_submodule(self.path) if self.path else self.root

    def get(self) -> torch.Tensor:
        return getattr(self.owner, self.attr)

    def set(self, tensor: torch.Tensor) -> None:
        owner = self.owner
        drop_derived_caches(owner)
        current = getattr(owner, self.attr, None)
        if isinstance(current, torch.nn.Parameter) or (current is None and self.attr in owner._parameters):
            requires_grad = current.requires_grad if current is not None else True
            setattr(owner, self.attr, torch.nn.Parameter(tensor.detach(), requires_grad=requires_grad))
        elif self.attr in owner._buffers:
            owner._buffers[self.attr] = tensor
        else:
            setattr(owner, self.attr, tensor)

    def __repr__(self) -> str:
        return f"ModuleBinding({self.key!r})"


@dataclass(eq=False)
class Parameter:
    """A tensor known before run time. ``kind`` is "parameter", "buffer" or "constant"."""

    binding: Binding
    kind: str = "parameter"

    @property
    def key(self) -> str:
        return self.binding.key

    @property
    def data(self) -> torch.Tensor:
        return self.binding.get()

    @data.setter
    def data(self, tensor: torch.Tensor) -> None:
        self.binding.set(tensor)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def is_meta(self) -> bool:
        return self.data.device.type == "meta"

    def __repr__(self) -> str:
        return f"Parameter({self.key!r}, {self.kind}, {list(self.shape)}, {self.dtype})"
