"""CoMe's concatenation-based merge of two adjacent decoder layers into one.

Layers ``a`` and ``b = a + 1`` each contribute attention heads and MLP channels to the residual stream.
The merged layer keeps the most sensitive of both, side by side, and computes them in parallel on the
input of ``a``:

* attention: whole KV groups (a K/V head with the query heads that read it, so GQA stays valid) are the
  unit; the q rows, k/v rows and o_proj columns of the kept groups are concatenated;
* MLP: gate/up rows and down_proj columns of the kept intermediate channels are concatenated;
* each layer's RMSNorm weight is folded into the columns of the projections it feeds (``W diag(g)``),
  so that heads from ``a`` and ``b`` keep their own scaling; the merged norms become all-ones.
  o_proj/down_proj biases add up (both layers' outputs were added to the stream).

Sensitivity (CoMe: activation intensity times weight norm) of an intermediate channel ``j`` feeding an
output projection ``W`` is ``||X_j||_2 * ||W[:, j]||_2`` on calibration data, summed over the channels of
a KV group for attention. The merged layer keeps ``max`` of the two layers' group counts and MLP widths,
so merging two equal layers removes exactly one layer's parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ...calibration import BlockCall, LinearInputRecorder
from ...errors import PassError
from .activations import Hidden, run_layer
from .hf_layers import layer_width, replace_linear

__all__ = ["ChannelSensitivity", "channel_sensitivity", "concat_merge"]


class ChannelSensitivity:
    """Per KV group and per MLP channel sensitivity of one layer."""

    def __init__(self, groups: torch.Tensor, mlp_channels: torch.Tensor):
        self.groups = groups
        self.mlp_channels = mlp_channels


@torch.no_grad()
def channel_sensitivity(layer: nn.Module, hidden: Hidden, calls: list[BlockCall]) -> ChannelSensitivity:
    """Activation intensity times output-weight norm, from running ``layer`` on its calibration inputs."""
    attention, mlp = layer.self_attn, layer.mlp
    recorder = LinearInputRecorder({"o_proj": attention.o_proj, "down_proj": mlp.down_proj})
    with recorder:
        for h, call in zip(hidden, calls):
            recorder.new_batch()
            run_layer(layer, [h], [call])
    head_channels = recorder.stats["o_proj"].l2_norm * attention.o_proj.weight.double().norm(dim=0).cpu()
    width = layer_width(layer)
    groups = head_channels.reshape(width["num_key_value_heads"], -1).sum(dim=1)
    mlp_channels = recorder.stats["down_proj"].l2_norm * mlp.down_proj.weight.double().norm(dim=0).cpu()
    return ChannelSensitivity(groups, mlp_channels)


def _norm_scale(norm: nn.Module) -> torch.Tensor:
    weight = getattr(norm, "weight", None)
    if weight is None or weight.dim() != 1:
        raise PassError(f"{type(norm).__name__} has no per-channel weight to fold; merging needs RMSNorm-style norms")
    return weight.detach()


def _top(scores_a: torch.Tensor, scores_b: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices kept from ``a`` and from ``b`` when the ``keep`` highest scores of both compete."""
    order = torch.cat([scores_a, scores_b]).argsort(descending=True)[:keep]
    chosen_a = order[order < scores_a.numel()].sort().values
    chosen_b = (order[order >= scores_a.numel()] - scores_a.numel()).sort().values
    return chosen_a, chosen_b


def _rows(weight: torch.Tensor, blocks: torch.Tensor, size: int) -> torch.Tensor:
    """Rows of ``weight`` in the ``size``-row blocks listed in ``blocks``."""
    index = (blocks[:, None] * size + torch.arange(size)).reshape(-1)
    return weight.index_select(0, index.to(weight.device))


def _concat_rows(parts: list[tuple[nn.Linear, torch.Tensor, int, torch.Tensor | None]]) -> tuple:
    """Concatenate chosen row blocks of several linears (each optionally scaled by a folded norm)."""
    weights, biases = [], []
    for linear, blocks, size, scale in parts:
        weight = linear.weight.detach() if scale is None else linear.weight.detach() * scale
        weights.append(_rows(weight, blocks, size))
        if linear.bias is not None:
            biases.append(_rows(linear.bias.detach()[:, None], blocks, size)[:, 0])
    return torch.cat(weights), (torch.cat(biases) if biases else None)


def _concat_columns(parts: list[tuple[nn.Linear, torch.Tensor, int]]) -> tuple:
    """Concatenate chosen column blocks of output projections; their biases add up."""
    columns = [_rows(linear.weight.detach().T, blocks, size).T for linear, blocks, size in parts]
    biases = [linear.bias.detach() for linear, _, _ in parts if linear.bias is not None]
    return torch.cat(columns, dim=1), (sum(biases) if biases else None)


@torch.no_grad()
def concat_merge(layer_a: nn.Module, layer_b: nn.Module, sens_a: ChannelSensitivity,
                 sens_b: ChannelSensitivity) -> None:
    """Rewrite ``layer_a`` in place into the CoMe merge of ``layer_a`` and ``layer_b``."""
    width_a, width_b = layer_width(layer_a), layer_width(layer_b)
    rep_a = width_a["num_attention_heads"] // width_a["num_key_value_heads"]
    rep_b = width_b["num_attention_heads"] // width_b["num_key_value_heads"]
    if rep_a != rep_b:
        raise PassError(f"cannot merge layers with {rep_a} and {rep_b} query heads per KV head")
    attn_a, attn_b, mlp_a, mlp_b = layer_a.self_attn, layer_b.self_attn, layer_a.mlp, layer_b.mlp
    head_dim = attn_a.head_dim
    keep_groups = max(width_a["num_key_value_heads"], width_b["num_key_value_heads"])
    groups_a, groups_b = _top(sens_a.groups, sens_b.groups, keep_groups)
    keep_channels = max(width_a["intermediate_size"], width_b["intermediate_size"])
    channels_a, channels_b = _top(sens_a.mlp_channels, sens_b.mlp_channels, keep_channels)

    in_a, in_b = _norm_scale(layer_a.input_layernorm), _norm_scale(layer_b.input_layernorm)
    q_rows = rep_a * head_dim
    replace_linear(attn_a, "q_proj", *_concat_rows([(attn_a.q_proj, groups_a, q_rows, in_a),
                                                    (attn_b.q_proj, groups_b, q_rows, in_b)]))
    for name in ("k_proj", "v_proj"):
        replace_linear(attn_a, name, *_concat_rows([(getattr(attn_a, name), groups_a, head_dim, in_a),
                                                    (getattr(attn_b, name), groups_b, head_dim, in_b)]))
    replace_linear(attn_a, "o_proj", *_concat_columns([(attn_a.o_proj, groups_a, q_rows),
                                                       (attn_b.o_proj, groups_b, q_rows)]))

    post_a, post_b = _norm_scale(layer_a.post_attention_layernorm), _norm_scale(layer_b.post_attention_layernorm)
    for name in ("gate_proj", "up_proj"):
        replace_linear(mlp_a, name, *_concat_rows([(getattr(mlp_a, name), channels_a, 1, post_a),
                                                   (getattr(mlp_b, name), channels_b, 1, post_b)]))
    replace_linear(mlp_a, "down_proj", *_concat_columns([(mlp_a.down_proj, channels_a, 1),
                                                         (mlp_b.down_proj, channels_b, 1)]))
    layer_a.input_layernorm.weight.fill_(1.0)
    layer_a.post_attention_layernorm.weight.fill_(1.0)
    attn_a.num_key_value_groups = rep_a
