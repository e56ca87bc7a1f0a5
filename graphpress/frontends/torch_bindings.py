"""Bindings for parameters the IR sees in a different layout than the module stores them.

GPT-2's ``Conv1D`` (and any ``x @ W`` with a parameter ``W``) keeps its weight as ``[in, out]``, while
``graphpress::Linear`` wants ``[out, in]``. Rather than rewrite the user's module or hide a ``Transpose``
node between the parameter and the Linear (which would make every pass special-case it), the IR holds the
same module parameter through a :class:`TransposedModuleBinding`: reading it gives ``W.t()`` (a view, so
in-place edits such as ``param.data.mul_(s)`` reach the module), and assigning a new ``[out', in']``
tensor stores its transpose back, so the module keeps its own ``[in', out']`` layout and its own class.
"""

from __future__ import annotations

import torch

from ..ir import ModuleBinding

__all__ = ["TransposedModuleBinding"]


class TransposedModuleBinding(ModuleBinding):
    """A 2-D module parameter stored ``[in, out]`` and presented to the IR as ``[out, in]``."""

    layout = "transposed"

    def get(self) -> torch.Tensor:
        return super().get().t()

    def set(self, tensor: torch.Tensor) -> None:
        super().set(tensor.t().contiguous())

    def __repr__(self) -> str:
        return f"TransposedModuleBinding({self.key!r})"
