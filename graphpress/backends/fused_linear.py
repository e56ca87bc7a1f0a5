"""Torch modules for sibling-Linear fusion: one matmul for several projections of the same input.

Hugging Face attention calls ``self.q_proj(x)``, ``self.k_proj(x)``, ``self.v_proj(x)`` one after the other,
and the forward code cannot be changed. So fusion keeps the three call sites and changes what they call:

* :class:`FusedLinear` holds the row-concatenated weight (``[q | k | v]``) and returns the split outputs, like
  :class:`~graphpress.backends.triton.linear.TritonQuantLinear` built from several parts does. Any module
  whose ``forward`` returns one output per projection can play this role (the Triton one included): both
  float and quantized fusion go through :func:`install_fused`.
* :class:`SiblingSlice` replaces each projection. It asks the fused module for its outputs on ``x``: the
  first sibling to call computes all of them once, the others reuse the result when they pass *the same
  tensor object* (same ``id``, not modified in place since: same ``_version``, same grad mode). Called
  with any other tensor it recomputes, so the result is always correct.

Trade-offs (documented in the pass): one GEMM instead of three, at the price of (1) holding the fused
output until every sibling has read its part (it is dropped then), (2) wasted work if a model calls the
siblings with *different* tensors, so a fused module that keeps seeing that switches itself to computing
each slice separately (no worse than unfused), (3) a state_dict with the fused key
(``...fused_q_proj_k_proj_v_proj.weight``) instead of the three originals: call :func:`unfuse_linears`
before ``save_pretrained`` to get the original layout back. The cache is per module and not thread-safe
(one forward at a time, as with KV caches).
"""

from __future__ import annotations

import weakref
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FusedLinear", "SiblingSlice", "install_fused", "sibling_rows", "unfuse_linears"]

# After this many cached results were evicted before every sibling read them (and more often than not),
# a fused module stops caching and computes each sibling's slice on its own.
_WASTE_LIMIT = 8


class FusedLinear(nn.Module):
    """``x @ cat(W_i)^T + cat(b_i)``, returned split as one tensor per original projection."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, split_sizes: Sequence[int],
                 names: Sequence[str] = ()):
        super().__init__()
        self.weight = nn.Parameter(weight.detach(), requires_grad=weight.requires_grad)
        self.bias = nn.Parameter(bias.detach(), requires_grad=bias.requires_grad) if bias is not None else None
        self.split_sizes = [int(s) for s in split_sizes]
        self.names = list(names)
        self.out_features, self.in_features = weight.shape

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(F.linear(x, self.weight, self.bias).split(self.split_sizes, dim=-1))

    def rows(self, start: int, stop: int) -> nn.Linear:
        """Output rows ``start:stop`` (one fused projection) as an ``nn.Linear`` of its own."""
        linear = nn.Linear(self.in_features, stop - start, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight[start:stop])
            if self.bias is not None:
                linear.bias.copy_(self.bias[start:stop])
        return linear

    def forward_part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Only projection ``index`` (the uncached path)."""
        start = sum(self.split_sizes[:index])
        rows = slice(start, start + self.split_sizes[index])
        return F.linear(x, self.weight[rows], None if self.bias is None else self.bias[rows])

    def extra_repr(self) -> str:
        names = f", fuses={self.names}" if self.names else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"split_sizes={self.split_sizes}, bias={self.bias is not None}{names}")


class _SharedOutputs:
    """The last fused result, keyed on the input tensor's identity and version (not an nn.Module).

    The fused module is looked up on its owner at each call (``owner.<attr>``), so a pass that replaces it
    there (``quantize`` swapping a :class:`FusedLinear` for a quantized module, ``lower-triton`` for a Triton
    one) is followed by every sibling without being told."""

    def __init__(self, owner: nn.Module, attr: str, count: int):
        self.owner = owner
        self.attr = attr
        self.count = count
        self.key: tuple | None = None
        self.ref: weakref.ref | None = None
        self.outputs: tuple[torch.Tensor, ...] | None = None
        self.read: set[int] = set()
        self.traced_input: torch.Tensor | None = None
        self.wasted = 0
        self.complete = 0

    @property
    def fused(self) -> nn.Module:
        return getattr(self.owner, self.attr)

    def __deepcopy__(self, memo: dict) -> "_SharedOutputs":
        import copy

        # The owner is the parent being copied (in memo already): the copy's siblings read the copy's module.
        return _SharedOutputs(copy.deepcopy(self.owner, memo), self.attr, self.count)

    def __getstate__(self) -> dict:
        # Pickling (torch.save of a whole model) keeps the owner link and drops the per-call cache.
        return {"owner": self.owner, "attr": self.attr, "count": self.count}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["owner"], state["attr"], state["count"])

    @property
    def caching(self) -> bool:
        return not (self.wasted >= _WASTE_LIMIT and self.wasted > self.complete) or not hasattr(self.fused, "forward_part")

    def get(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self._get_traced(x, index)
        if not self.caching:
            return self.fused.forward_part(x, index)
        key = (id(x), x._version, torch.is_grad_enabled())
        if self.outputs is None or self.key != key or self.ref is None or self.ref() is not x:
            if self.outputs is not None and len(self.read) < self.count:
                self.wasted += 1
            self.outputs = tuple(self.fused(x))
            self.key, self.ref, self.read = key, weakref.ref(x), set()
        out = self.outputs[index]
        self.read.add(index)
        if len(self.read) == self.count:  # every sibling has its part: free the fused result
            self.complete += 1
            self.outputs, self.ref, self.key = None, None, None
        return out


    def _get_traced(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The same sharing while torch.compile traces: keyed on the traced tensor itself (``is``), since
        ``id`` and ``_version`` of a traced tensor are not values the compiler can guard on. The graph it
        builds computes the fused product once and slices it for every sibling."""
        if self.outputs is None or self.traced_input is not x:
            self.outputs = tuple(self.fused(x))
            self.traced_input, self.read = x, set()
        out = self.outputs[index]
        self.read.add(index)
        if len(self.read) == self.count:
            self.outputs, self.traced_input = None, None
        return out


class SiblingSlice(nn.Module):
    """Stands where one fused projection was; returns its part of the fused module's output."""

    def __init__(self, shared: _SharedOutputs, index: int, in_features: int, out_features: int):
        super().__init__()
        self._shared = shared  # not a submodule: the fused module is registered once, on the parent
        self.index = index
        self.in_features, self.out_features = in_features, out_features

    @property
    def fused(self) -> nn.Module:
        return self._shared.fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._shared.get(x, self.index)

    def extra_repr(self) -> str:
        return f"part {self.index} of the fused module, in_features={self.in_features}, out_features={self.out_features}"


def install_fused(model: nn.Module, paths: Sequence[str], fused: nn.Module, fused_path: str,
                  sizes: Sequence[int]) -> None:
    """Register ``fused`` at ``fused_path`` and put a :class:`SiblingSlice` at each of ``paths``."""
    parent_path, _, attr = fused_path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    parent.add_module(attr, fused)
    shared = _SharedOutputs(parent, attr, len(paths))
    in_features = int(getattr(fused, "in_features", 0))
    for index, (path, size) in enumerate(zip(paths, sizes)):
        owner_path, _, name = path.rpartition(".")
        owner = model.get_submodule(owner_path) if owner_path else model
        setattr(owner, name, SiblingSlice(shared, index, in_features, int(size)))


def sibling_rows(module: nn.Module) -> nn.Module:
    """For a :class:`SiblingSlice`, its projection as a layer of its own: ``fused.rows(start, stop)`` of a fused
    module that can be sliced by rows (:class:`FusedLinear`, a quantized fused ``QuantizedLinear``); anything
    else, or a fused module without ``rows`` (Triton kernel layouts), is returned as it is."""
    if not isinstance(module, SiblingSlice):
        return module
    fused = module.fused
    sizes = getattr(fused, "split_sizes", None)
    if not hasattr(fused, "rows") or not sizes or len(sizes) != module._shared.count:
        return module
    start = sum(sizes[:module.index])
    return fused.rows(start, start + sizes[module.index])


def unfuse_linears(model: nn.Module) -> int:
    """Put separate layers back where :class:`SiblingSlice` modules stand (the original state_dict layout,
    e.g. before ``save_pretrained``) and drop the fused modules: ``nn.Linear`` for a float
    :class:`FusedLinear`, a quantized layer of its own for a quantized fused one.  Returns how many were
    restored; fused modules that cannot be sliced (Triton kernel layouts) are left alone."""
    restored, fused_paths = 0, set()
    for path, module in list(model.named_modules()):
        if not isinstance(module, SiblingSlice):
            continue
        fused = module.fused
        part = sibling_rows(module)
        if part is module:
            continue
        owner_path, _, name = path.rpartition(".")
        setattr(model.get_submodule(owner_path) if owner_path else model, name, part)
        fused_paths.update(p for p, m in model.named_modules() if m is fused)
        restored += 1
    for path in fused_paths:
        owner_path, _, name = path.rpartition(".")
        delattr(model.get_submodule(owner_path) if owner_path else model, name)
    if restored:
        from graphpress.quantization.swap import CONFIG_KEY, attach_quantization_config

        if hasattr(getattr(model, "config", None), CONFIG_KEY):  # what save_pretrained writes must follow
            attach_quantization_config(model)
    return restored
