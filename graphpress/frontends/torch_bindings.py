"""Bindings for module tensors that the IR sees differently from how the module stores them.

* **Tied tensors.** One tensor reachable under several state_dict names (GPT-2's ``transformer.wte.weight``
  and ``lm_head.weight``, Llama's tied embeddings) is one IR value with an :class:`AliasedModuleBinding`:
  its ``key`` is the first name in ``named_parameters`` order and ``aliases`` lists the others. Assigning a
  new tensor puts the *same* new ``nn.Parameter`` under every name, so pruning the embedding also prunes
  the LM head and the tie survives ``save_pretrained``.
* **Transposed storage.** GPT-2's ``Conv1D`` (and any ``x @ W`` with a parameter ``W``) keeps its weight as
  ``[in, out]``, while ``graphpress::Linear`` wants ``[out, in]``. Rather than rewrite the user's module or
  hide a ``Transpose`` node between the parameter and the Linear (which every pass would have to
  special-case), the IR holds the parameter through a :class:`TransposedModuleBinding`: reading it gives
  ``W.t()`` (a view, so in-place edits such as ``param.data.mul_(s)`` reach the module), and assigning a new
  ``[out', in']`` tensor stores its transpose, so the module keeps its own layout and its own class.
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..ir import ModuleBinding, TransposedBinding

__all__ = ["AliasedModuleBinding", "TransposedModuleBinding", "tensor_aliases"]


def tensor_aliases(module: torch.nn.Module) -> dict[int, list[str]]:
    """``id(tensor) -> [every state_dict-style name it has]`` for parameters and buffers, in module order."""
    names: dict[int, list[str]] = {}
    for name, tensor in module.named_parameters(remove_duplicate=False):
        names.setdefault(id(tensor), []).append(name)
    for name, tensor in module.named_buffers(remove_duplicate=False):
        names.setdefault(id(tensor), []).append(name)
    return names


class AliasedModuleBinding(ModuleBinding):
    """A module tensor shared by several attributes (tied weights); setting it re-ties all of them."""

    def __init__(self, root: torch.nn.Module, key: str, aliases: Iterable[str]):
        super().__init__(root, key)
        self.aliases = tuple(aliases)

    def set(self, tensor: torch.Tensor) -> None:
        super().set(tensor)
        shared = super().get()
        for alias in self.aliases:
            path, _, attr = alias.rpartition(".")
            owner = self.root.get_submodule(path) if path else self.root
            if attr in owner._buffers:
                owner._buffers[attr] = shared
            else:
                setattr(owner, attr, shared)

    def __repr__(self) -> str:
        return f"AliasedModuleBinding({self.key!r}, aliases={list(self.aliases)})"


class TransposedModuleBinding(TransposedBinding, ModuleBinding):
    """A 2-D module parameter stored ``[in, out]`` and presented to the IR as ``[out, in]``.

    It wraps the parameter's own binding, so a tied parameter stays tied when edited through it; reading and
    assigning are :class:`~graphpress.ir.TransposedBinding`'s, and it still is a module binding (``root``,
    ``path``) for the code that maps IR tensors back to the module.
    """

    def __init__(self, stored: ModuleBinding):
        ModuleBinding.__init__(self, stored.root, stored.key)
        TransposedBinding.__init__(self, stored)

    def __repr__(self) -> str:
        return f"TransposedModuleBinding({self.key!r})"
