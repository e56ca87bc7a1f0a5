"""Modules that compute a linear map without being ``nn.Linear``, adopted as ``nn.Linear`` before a pass that
swaps linear modules.

GPT-2, OpenAI GPT, ImageGPT, CLVP and the other GPT-2-derived models of transformers compute every projection
with ``Conv1D``: a weight stored ``[in, out]`` and ``addmm(bias, x.view(-1, in), weight)``. The IR already sees
each one as a ``graphpress::Linear`` node (the frontend reads the weight through a transposed view), but
``quantize`` swaps ``nn.Linear`` modules, so it left all of GPT-2's projections in float.

The test is structural and numeric, never a list of classes. A module is adopted when

* its own tensors are a 2-D ``weight`` and at most a 1-D ``bias`` (no buffers, no submodules);
* the graph computes exactly one Linear node in its scope, reading that weight (as stored, or transposed) and
  that bias or none, and nothing else in its scope but reshapes that keep the leading axes;
* nothing else in the graph reads its weight;
* on a random input its forward equals ``F.linear`` with that weight and bias.

It is then replaced (in the graph's working module) by an ``nn.Linear`` holding the weight as ``[out, in]``,
and the IR's binding follows, so the swap is exact and every later pass sees an ordinary linear layer.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ir import Graph, ModuleBinding, Node, Value, storage_binding
from ..quantization.swap import matches_on_probe, set_module
from .linear_edits import is_linear

__all__ = ["adopt_linear_like_modules"]

_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def _own_tensors(module: nn.Module) -> dict[str, torch.Tensor] | None:
    """``{"weight": ..., "bias": ...}`` when those are all the module holds, else None."""
    if isinstance(module, nn.Linear) or next(module.children(), None) is not None:
        return None
    if any(True for _ in module.buffers(recurse=False)):
        return None
    tensors = dict(module.named_parameters(recurse=False))
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if set(tensors) - {"weight", "bias"} or weight is None or weight.dim() != 2 or weight.is_meta:
        return None
    if bias is not None and bias.dim() != 1:
        return None
    return tensors


def _module_binding(value: Value | None) -> ModuleBinding | None:
    binding = storage_binding(value.param.binding) if value is not None and value.param is not None else None
    return binding if isinstance(binding, ModuleBinding) else None


def _keeps_leading_axes(node: Node) -> bool:
    """The Linear's input comes from the module's input, and its output reaches the module's output, through
    reshapes that keep the leading axes (so each row of the input maps to the same row of the output)."""
    def through_reshapes(value: Value, upstream: bool) -> Value:
        while True:
            nxt = value.producer if upstream else (value.uses[0][0] if len(value.uses) == 1 else None)
            if nxt is None or nxt.op not in _RESHAPES or nxt.scope != node.scope:
                return value
            value = nxt.input(0) if upstream else nxt.outputs[0]

    source, result = through_reshapes(node.input(0), True), through_reshapes(node.outputs[0], False)
    if source.shape is None or result.shape is None:
        return False
    return tuple(source.shape[:-1]) == tuple(result.shape[:-1])


def _as_linear(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear | None:
    """An ``nn.Linear`` computing ``module``'s forward, if a random probe says they agree."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(weight.detach().contiguous(), requires_grad=weight.requires_grad)
    if bias is not None:
        linear.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias.detach())
    probe = torch.randn(2, 3, weight.shape[1], generator=torch.Generator().manual_seed(0)).to(weight)
    with torch.no_grad():
        want = linear(probe)
    tolerance = 1e-3 if weight.dtype in (torch.float16, torch.bfloat16) else 1e-5
    return linear if matches_on_probe(module, probe, want, tolerance, tolerance * float(want.abs().max())) else None


def adopt_linear_like_modules(graph: Graph) -> list[str]:
    """Replace each linear-like module of a torch ``graph``'s working module by an equivalent ``nn.Linear`` and
    rebind the IR to it; the names of the modules replaced."""
    root = graph.module
    if root is None:
        return []
    by_scope: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.scope:
            by_scope.setdefault(node.scope, []).append(node)
    holders: dict[int, int] = {}  # tensor id -> how many module attributes hold it (tied weights: several)
    for _, tensor in root.named_parameters(remove_duplicate=False):
        holders[id(tensor)] = holders.get(id(tensor), 0) + 1
    readers: dict[str, int] = {}  # stored weight key -> how many graph values read it
    for value in graph.constants:
        binding = _module_binding(value)
        if binding is not None:
            readers[binding.key] = readers.get(binding.key, 0) + 1
    adopted = []
    for path, nodes in by_scope.items():
        linears = [n for n in nodes if is_linear(n)]
        if len(linears) != 1 or any(n.op not in _RESHAPES for n in nodes if n is not linears[0]):
            continue
        try:
            module = root.get_submodule(path)
        except AttributeError:
            continue
        tensors = _own_tensors(module)
        node = linears[0]
        weight_value, bias_value = node.input(1), (node.input(2) if len(node.inputs) > 2 else None)
        weight_binding, bias_binding = _module_binding(weight_value), _module_binding(bias_value)
        if tensors is None or weight_binding is None or weight_binding.key != f"{path}.weight":
            continue
        if ("bias" in tensors) != (bias_binding is not None) or (bias_binding and bias_binding.key != f"{path}.bias"):
            continue
        if any(use is not node for use, _ in weight_value.uses) or readers.get(weight_binding.key) != 1:
            continue
        if holders.get(id(tensors["weight"])) != 1 or not _keeps_leading_axes(node):
            continue
        linear = _as_linear(module, weight_value.param.data, tensors.get("bias"))
        if linear is None:
            continue
        set_module(root, path, linear)
        weight_value.param.binding = weight_binding  # the new module stores the weight as the graph reads it
        adopted.append(path)
    return adopted
