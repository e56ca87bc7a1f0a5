"""Hugging Face fix-ups for mixture-of-experts layers after structured pruning.

transformers 5.x keeps a layer's experts as fused 3-D parameters (``gate_up_proj [E, 2*I, H]`` or
``up_proj [E, I, H]``, ``down_proj [E, H, I]``; the last two axes swapped when ``is_transposed``), so
every expert of a layer has the same intermediate width ``I``: the coupling analysis makes that axis one
group over all experts, and pruning keeps it one width. What the modules keep beside their tensors:

* the experts module's ``intermediate_dim``/``hidden_dim`` (names vary: ``intermediate_size``,
  ``expert_dim``, ``hidden_size``), from the tensors;
* the top-k router's ``hidden_dim``, which its forward reshapes the tokens with (``reshape(-1,
  self.hidden_dim)``), from its ``[E, H]`` weight; the expert count ``E`` is never pruned;
* the config width the experts are built from, for ``save_pretrained``/``from_pretrained``:
  ``moe_intermediate_size`` where the config has one (Qwen2/3-MoE, DeepSeek), else ``intermediate_size``
  (Mixtral, OLMoE); a Qwen2-MoE shared expert's width goes to ``shared_expert_intermediate_size``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import BackendError
from ..frontends.torch_moe import is_fused_experts
from ..ir import Graph
from .torch_module import register_module_fixup

__all__ = ["experts_widths", "fix_experts", "fix_router", "is_topk_router", "moe_config_updates"]

_INTERMEDIATE_ATTRS = ("intermediate_dim", "intermediate_size", "expert_dim", "moe_intermediate_size")
_HIDDEN_ATTRS = ("hidden_dim", "hidden_size")


def experts_widths(module: nn.Module) -> tuple[int, int]:
    """(intermediate width I, hidden width H) of a fused experts module, read from its tensors."""
    transposed = bool(getattr(module, "is_transposed", False))
    gated = isinstance(module._parameters.get("gate_up_proj"), torch.Tensor)
    up = module.gate_up_proj if gated else module.up_proj
    down = module.down_proj
    up_out, up_in = (up.shape[2], up.shape[1]) if transposed else (up.shape[1], up.shape[2])
    down_out, down_in = (down.shape[2], down.shape[1]) if transposed else (down.shape[1], down.shape[2])
    intermediate = up_out // 2 if gated else up_out
    if down_in != intermediate or down_out != up_in or (gated and up_out % 2):
        raise BackendError(f"{type(module).__name__}: experts up {tuple(up.shape)} and down {tuple(down.shape)} "
                           f"disagree on their widths; the pass that edited them left the module inconsistent")
    return int(intermediate), int(up_in)


def _set_ints(module: nn.Module, names: tuple[str, ...], value: int) -> None:
    for name in names:
        if isinstance(getattr(module, name, None), int) and not isinstance(getattr(module, name), bool):
            setattr(module, name, value)


@register_module_fixup(is_fused_experts)
def fix_experts(module: nn.Module, path: str, graph: Graph) -> None:
    """The widths the experts module records (its forward reads the tensors, ``repr`` and users these)."""
    intermediate, hidden = experts_widths(module)
    _set_ints(module, _INTERMEDIATE_ATTRS, intermediate)
    _set_ints(module, _HIDDEN_ATTRS, hidden)


def is_topk_router(module: nn.Module) -> bool:
    """A top-k router: a ``[E, H]`` weight read by ``F.linear``, with ``top_k`` and a recorded hidden width."""
    weight = module._parameters.get("weight")
    return (not isinstance(module, nn.Linear) and isinstance(weight, torch.Tensor) and weight.dim() == 2
            and isinstance(getattr(module, "top_k", None), int)
            and any(isinstance(getattr(module, n, None), int) for n in _HIDDEN_ATTRS))


@register_module_fixup(is_topk_router)
def fix_router(module: nn.Module, path: str, graph: Graph) -> None:
    _set_ints(module, _HIDDEN_ATTRS, int(module.weight.shape[1]))
    if isinstance(getattr(module, "num_experts", None), int) and module.num_experts != module.weight.shape[0]:
        raise BackendError(f"{path} ({type(module).__name__}): the router has {module.weight.shape[0]} expert rows "
                           f"for {module.num_experts} experts; the expert count must never be pruned")


def moe_config_updates(config: Any, widths: list[dict[str, int]]) -> dict[str, int]:
    """Config fields to set from the per-layer widths (only fields the config has, only when every layer
    agrees, and never ``intermediate_size`` where dense layers disagree with the experts)."""
    updates: dict[str, int] = {}
    for key in ("moe_intermediate_size", "shared_expert_intermediate_size"):
        values = {w[key] for w in widths if key in w}
        if len(values) != 1:
            continue
        value = values.pop()
        if hasattr(config, key):
            updates[key] = value
        elif key == "moe_intermediate_size" and hasattr(config, "intermediate_size"):
            dense = {w["intermediate_size"] for w in widths if "intermediate_size" in w}
            if not dense or dense == {value}:
                updates["intermediate_size"] = value
    return updates


_GEMM_ALIGN_BYTES = 16


def experts_multiples(model: nn.Module) -> dict[tuple[str, int], int]:
    """``{(parameter key, axis): multiple}`` for the width axes of fused experts: transformers' grouped-GEMM
    forward (``torch._grouped_mm``, its default on CPU with torch >= 2.11 and on recent GPUs) refuses
    strides that are not multiples of 16 bytes, so the intermediate and hidden widths it sees must stay
    multiples of ``16 / itemsize`` elements (4 in float32, 8 in bfloat16)."""
    found: dict[tuple[str, int], int] = {}
    for path, module in model.named_modules():
        if not is_fused_experts(module):
            continue
        for name in ("gate_up_proj", "up_proj", "down_proj"):
            tensor = module._parameters.get(name)
            if isinstance(tensor, torch.Tensor):
                multiple = max(1, _GEMM_ALIGN_BYTES // tensor.element_size())
                key = f"{path}.{name}" if path else name
                found.update({(key, 1): multiple, (key, 2): multiple})
    return found
