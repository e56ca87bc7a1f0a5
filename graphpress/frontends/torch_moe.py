"""Mixture-of-experts layers, traced as a dense, data-independent computation.

Hugging Face (transformers 5.x) stores the experts of Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V3,
GPT-OSS and most other MoE models the same way: one module decorated with ``use_experts_implementation``
that holds fused 3-D parameters (``gate_up_proj [E, 2*I, H]`` or ``up_proj [E, I, H]``, ``down_proj [E, H,
I]``; transposed when ``is_transposed``) and is called as ``experts(hidden_states, top_k_index,
top_k_weights)`` after a top-k router. Its forwards (an eager loop over the experts that were hit, using
``nonzero``/``where``; a grouped GEMM over tokens sorted by expert) all have sizes that depend on the
routing, which ``torch.export`` can only follow with unbacked symbolic sizes, and which would leave the
coupling analysis with per-expert gathers of data-dependent length.

While tracing, :func:`dense_experts_forward` replaces them (see :mod:`.torch_substitutions`): every
expert runs on every token as one batched matmul over the expert axis, and a routing matrix
``R[t, e] = sum_j w[t, j] * (index[t, j] == e)`` (zero for experts a token did not pick) weighs and sums
the results. The numbers are those of the sparse forward (up to float summation order); the shapes are
static. Why this and not ``nonzero`` with unbacked symints: it depends only on the storage convention
shared by every model above, not on how each model's forward loops, so one substitution covers them all;
the IR stays plain ``MatMul``/``Split``/``Mul``/``ReduceSum`` over the 3-D weights, which the existing
per-op coupling rules already follow (each expert axis position is one batch slice; the intermediate axis
is shared by all experts, so it forms one group scored over every expert; the expert axis meets the
routing matrix, a tensor of fixed width, and is frozen); and the ONNX emitted from it runs anywhere.
The cost: an ONNX file exported from such a graph computes all ``E`` experts per token (``E / k`` times
the expert FLOPs of the sparse model). The module handed back to the user keeps its own sparse forward.
"""

from __future__ import annotations

import inspect

import torch

from .torch_substitutions import register_trace_substitution

__all__ = ["is_fused_experts", "dense_experts_forward", "routing_matrix"]


def _weight(module: torch.nn.Module, name: str) -> torch.Tensor | None:
    tensor = module._parameters.get(name)
    return tensor if isinstance(tensor, torch.Tensor) and tensor.dim() == 3 else None


def _call_names(module: torch.nn.Module) -> list[str] | None:
    """The names of the forward's first three parameters (the decorator keeps them through ``wraps``)."""
    try:
        names = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return None
    return names[:3] if len(names) >= 3 else None


def is_fused_experts(module: torch.nn.Module) -> bool:
    """A module holding its experts as 3-D ``[gate_]up_proj``/``down_proj`` and called with the hidden
    states, the router's top-k indices and their weights (the transformers 5.x experts convention:
    ``top_k_index``/``top_k_weights``, or GPT-OSS's ``router_indices``/``routing_weights``)."""
    if _weight(module, "down_proj") is None:
        return False
    if _weight(module, "gate_up_proj") is None and _weight(module, "up_proj") is None:
        return False
    names = _call_names(module)
    return names is not None and "hidden" in names[0] and "ind" in names[1] and "weight" in names[2]


def routing_matrix(top_k_index: torch.Tensor, top_k_weights: torch.Tensor, num_experts: int,
                   dtype: torch.dtype) -> torch.Tensor:
    """``[tokens, E]`` weights of each expert for each token (0 where it was not picked; an index outside
    ``[0, E)``, such as an expert-parallel sentinel, picks nothing)."""
    experts = torch.arange(num_experts, device=top_k_index.device)
    picked = (top_k_index.unsqueeze(-1) == experts).to(dtype)  # [tokens, k, E]
    return (picked * top_k_weights.to(dtype).unsqueeze(-1)).sum(dim=1)


def _expert_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   transposed: bool) -> torch.Tensor:
    """``x [1 or E, T, in]`` through every expert's weight: ``[E, T, out]``."""
    out = torch.matmul(x, weight if transposed else weight.transpose(1, 2))
    return out if bias is None else out + bias.unsqueeze(1)


def dense_experts_forward(self: torch.nn.Module, *args: object, **kwargs: object) -> torch.Tensor:
    """What the experts module computes, with every expert applied to every token (static shapes).

    Arguments are bound by the module's own forward signature, so keyword calls work whatever the names."""
    bound = inspect.signature(type(self).forward).bind(self, *args, **kwargs)
    hidden_states, top_k_index, top_k_weights = list(bound.arguments.values())[1:4]
    has_gate = bool(getattr(self, "has_gate", _weight(self, "gate_up_proj") is not None))
    up_name = "gate_up_proj" if has_gate else "up_proj"
    transposed = bool(getattr(self, "is_transposed", False))
    has_bias = bool(getattr(self, "has_bias", False))
    up, down = getattr(self, up_name), self.down_proj
    up_bias = getattr(self, f"{up_name}_bias", None) if has_bias else None
    down_bias = getattr(self, "down_proj_bias", None) if has_bias else None
    hidden = _expert_linear(hidden_states.unsqueeze(0).to(up.dtype), up, up_bias, transposed)
    if not has_gate:
        hidden = self.act_fn(hidden)
    elif hasattr(self, "_apply_gate"):  # the decorator's default (chunk, act(gate) * up) or the model's own
        hidden = self._apply_gate(hidden)
    else:
        gate, up_part = hidden.chunk(2, dim=-1)
        hidden = self.act_fn(gate) * up_part
    out = _expert_linear(hidden, down, down_bias, transposed)  # [E, T, H]
    if getattr(self, "has_post_expert_norm", False):
        out = self.post_expert_norm(out)
    routing = routing_matrix(top_k_index, top_k_weights, down.shape[0], torch.result_type(out, top_k_weights))
    weighted = out * routing.transpose(0, 1).unsqueeze(-1)  # [E, T, H]
    return weighted.sum(dim=0).to(hidden_states.dtype)


register_trace_substitution(is_fused_experts)(dense_experts_forward)
