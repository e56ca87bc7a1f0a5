"""Hugging Face fix-ups after structured pruning, and the loader for models whose layers differ in width.

Module-preserving pruning hands back the user's class. Generic layers (``nn.Linear``...) are fixed by
:mod:`.torch_module`; this file adds what Hugging Face models keep beside their tensors:

* attention modules' head counts (``num_heads``, ``num_key_value_heads``, ``all_head_size``, GPT-2's
  ``split_size`` (its cross-attention's too), T5's ``n_heads`` and ``inner_dim``, Phi-3's fused ``qkv_proj``
  split, which reads ``self.config``), derived from the projection weights and ``head_dim`` (never pruned);
* the config: ``hidden_size``, ``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads`` and an
  explicit ``head_dim`` when every layer has the same widths, so ``save_pretrained`` + the class's own
  ``from_pretrained`` reload it; a value the config's validators or the class refuse (or with which the class
  builds other tensors) is left out (:func:`set_validated`). Every pruned model also records
  ``graphpress_layer_widths`` (per layer), ``graphpress_shapes`` (every tensor's shape) and
  ``graphpress_module_scalars`` (modules' numbers and small buffers) in its config;
* tensors the class computes when built and leaves out of its checkpoints (non-persistent buffers,
  ``_keys_to_ignore_on_save``: sinusoidal position tables) are saved where pruning resized them
  (:func:`persist_resized_tensors`);
* mixture-of-experts widths (fused experts, top-k routers, ``moe_intermediate_size``): :mod:`.hf_moe`;
* linear biases a pass created (``compensate-bias``): where the config has a switch for them
  (``attention_bias``, ``mlp_bias`` of Llama-style models) it is turned on and the other linears it governs
  get zero biases, so the class's own ``from_pretrained`` builds the same modules and the saved biases load.

Layers of different widths (``scope=global``) can't be expressed by the standard config; save them with
``model.save_pretrained(folder)`` as usual and reload with :func:`.hf_reload.load_pruned`. What the class
builds from a config is asked on the meta device (:mod:`.hf_meta_build`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from torch import nn

from ..ir import Graph
from .hf_meta_build import persist_resized_tensors, set_validated
from .hf_moe import experts_widths, is_fused_experts, moe_config_updates
from .hf_reload import module_scalars
from .torch_module import register_module_fixup

__all__ = ["fix_attention_heads", "fix_config", "fix_bias_switches", "layer_widths", "input_embeddings"]

_Q_NAMES = ("q_proj", "query", "q")  # "q"/"k": T5 and its descendants
_K_NAMES = ("k_proj", "key", "k")
_MLP_UP = ("up_proj", "fc1", "c_fc", "w1", "gate_up_proj")
_LAYER = re.compile(r"^(.*\.)?(layers|layer|h|blocks)\.(\d+)\.")


def _out_features(module: nn.Module | None) -> int | None:
    weight = getattr(module, "weight", None)
    if weight is None:  # quantized linears keep packed buffers, not a weight
        out = getattr(module, "out_features", None)
        return int(out) if isinstance(out, int) else None
    return int(weight.shape[1] if type(module).__name__ == "Conv1D" else weight.shape[0])


def _head_dim(module: nn.Module) -> int | None:
    for name in ("head_dim", "attention_head_size", "key_value_proj_dim"):
        value = getattr(module, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _head_counts(module: nn.Module) -> tuple[int, int] | None:
    """(query heads, kv heads) from the projection weights, or None for a module that is not attention."""
    head_dim = _head_dim(module)
    if head_dim is None:
        return None
    q = next((getattr(module, n) for n in _Q_NAMES if hasattr(module, n)), None)
    k = next((getattr(module, n) for n in _K_NAMES if hasattr(module, n)), None)
    if q is not None and k is not None:
        return _out_features(q) // head_dim, _out_features(k) // head_dim
    if hasattr(module, "c_attn") and getattr(module, "is_cross_attention", False) and hasattr(module, "q_attn"):
        # GPT-2's cross-attention: queries from q_attn, keys and values the two halves of c_attn (split_size)
        return _out_features(module.q_attn) // head_dim, _out_features(module.c_attn) // (2 * head_dim)
    if hasattr(module, "c_attn"):
        heads = _out_features(module.c_attn) // (3 * head_dim)
        return heads, heads
    if hasattr(module, "qkv_proj"):
        groups = int(getattr(module, "num_key_value_groups", 1))
        kv = _out_features(module.qkv_proj) // (head_dim * (groups + 2))
        return kv * groups, kv
    return None


def _is_attention(module: nn.Module) -> bool:
    return type(module).__name__.endswith("Attention") and _head_counts(module) is not None


@register_module_fixup(_is_attention)
def fix_attention_heads(module: nn.Module, path: str, graph: Graph) -> None:
    """Write the head counts the forward code reads (only attributes the module already has)."""
    heads, kv_heads = _head_counts(module)
    head_dim = _head_dim(module)
    updates = {"num_heads": heads, "num_attention_heads": heads, "num_key_value_heads": kv_heads, "n_heads": heads,
               "all_head_size": heads * head_dim, "split_size": heads * head_dim, "inner_dim": heads * head_dim}
    for name, value in updates.items():
        if isinstance(getattr(module, name, None), int):
            setattr(module, name, value)
    config = getattr(module, "config", None)
    if not isinstance(getattr(config, "num_attention_heads", None), int):
        return  # no config, or per-stage head lists (SegFormer): this module does not read its count there
    if (config.num_attention_heads != heads or getattr(config, "num_key_value_heads", kv_heads) != kv_heads):
        # Phi-3 splits its fused qkv with self.config: give this layer its own view of the counts.
        module.config = copy.copy(config)
        module.config.num_attention_heads = heads
        if hasattr(config, "num_key_value_heads"):
            module.config.num_key_value_heads = kv_heads


def layer_widths(model: nn.Module) -> list[dict[str, int]]:
    """Per decoder/encoder layer: query heads, KV heads and MLP width, in layer order."""
    layers: dict[int, dict[str, int]] = {}
    for path, module in model.named_modules():
        match = _LAYER.match(path + ".")
        if match is None:
            continue
        entry = layers.setdefault(int(match.group(3)), {})
        counts = _head_counts(module) if _is_attention(module) else None
        if counts is not None:
            entry["num_attention_heads"], entry["num_key_value_heads"] = counts
        name = path.rsplit(".", 1)[-1]
        if is_fused_experts(module):  # fused experts (mixture of experts): see hf_moe
            entry["moe_intermediate_size"] = experts_widths(module)[0]
        elif name in _MLP_UP and ".shared_expert." in path + ".":
            width = _out_features(module)
            entry["shared_expert_intermediate_size"] = width // 2 if name == "gate_up_proj" else width
        elif name in _MLP_UP and "intermediate_size" not in entry:
            width = _out_features(module)
            entry["intermediate_size"] = width // 2 if name == "gate_up_proj" else width
        if path.endswith("intermediate.dense"):
            entry["intermediate_size"] = _out_features(module)
    return [layers[i] for i in sorted(layers)]


def input_embeddings(model: nn.Module) -> nn.Module | None:
    """The model's token embedding module, or None where it has none.

    Every ``PreTrainedModel`` has ``get_input_embeddings``, but vision and audio models (ResNet, SegFormer,
    MobileViT...) raise ``NotImplementedError`` from it: having no token table is an answer, not an error."""
    getter = getattr(model, "get_input_embeddings", None)
    if getter is None:
        return None
    try:
        return getter()
    except NotImplementedError:
        return None


def _hidden_size(model: nn.Module) -> int | None:
    """The width of the model's token embeddings, or None where its input module is no embedding table.

    Speech encoders answer ``get_input_embeddings`` with their first convolution (Whisper's ``conv1``), whose
    ``weight.shape[1]`` is the number of mel bins, not the hidden size."""
    embeddings = input_embeddings(model)
    width = getattr(embeddings, "embedding_dim", None)
    weight = getattr(embeddings, "weight", None)
    if not isinstance(width, int) or weight is None or weight.dim() != 2:
        return None
    return int(weight.shape[1])


_CONFIG_KEYS = {"num_attention_heads": ("num_attention_heads", "n_head"),
                "num_key_value_heads": ("num_key_value_heads",),
                "intermediate_size": ("intermediate_size", "n_inner")}


@register_module_fixup(lambda m: hasattr(m, "config") and hasattr(m, "save_pretrained"))
def fix_config(module: nn.Module, path: str, graph: Graph) -> None:
    """Keep the config in step with the tensors (the root model only)."""
    if path:
        return
    config = module.config
    # Buffers sized other than a build from the config gives, as it was (a table pruning sliced) and as it will
    # be (a table pruning left alone, in a model whose config width now says another stream's): saved.
    persist_resized_tensors(module)
    widths = layer_widths(module)
    set_validated(config, _width_updates(module, widths), type(module))
    persist_resized_tensors(module)
    fix_bias_switches(module)
    config.graphpress_layer_widths = widths
    config.graphpress_shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    config.graphpress_module_scalars = module_scalars(module)


def _width_updates(module: nn.Module, widths: list[dict[str, int]]) -> dict[str, Any]:
    """The config values (name: value, in order) that say the pruned model's widths, where one value says them."""
    config = module.config
    updates: dict[str, Any] = {}
    hidden = _hidden_size(module)
    head_dim = next((_head_dim(m) for m in module.modules() if _is_attention(m)), None)
    if hidden is not None and isinstance(getattr(config, "hidden_size", None), int):
        updates["hidden_size"] = hidden
    if head_dim is not None and "head_dim" in config.to_dict():
        updates["head_dim"] = head_dim
    elif head_dim is not None and hasattr(config, "num_attention_heads") and widths and \
            type(config).__name__ in ("LlamaConfig", "MistralConfig", "Qwen2Config", "MixtralConfig"):
        updates["head_dim"] = head_dim
    for key, names in _CONFIG_KEYS.items():
        values = {w[key] for w in widths if key in w}
        if key == "num_attention_heads" and values and hidden is not None and hidden % next(iter(values)):
            continue  # the config validator would refuse it: keep the old count, load with load_pruned()
        if len(values) == 1:
            for name in names:
                # A per-stage list (SegFormer's num_attention_heads=[1, 2, 5, 8]) is not one width to overwrite.
                if isinstance(getattr(config, name, None), int):
                    updates[name] = next(iter(values))
    updates.update(moe_config_updates(config, widths))
    return updates


def _switched_linears(model: nn.Module, switch: str) -> list[nn.Linear]:
    """The linears a config bias switch governs: those of attention modules or of ``mlp`` submodules."""
    if switch == "attention_bias":
        owners = [m for m in model.modules() if _is_attention(m)]
    else:
        owners = [m for path, m in model.named_modules() if path.rsplit(".", 1)[-1] == "mlp"]
    return [child for owner in owners for child in owner.children() if isinstance(child, nn.Linear)]


def fix_bias_switches(model: nn.Module) -> None:
    """Turn on ``attention_bias``/``mlp_bias`` when a pass gave some of their linears a bias, giving the rest
    zero biases: ``from_pretrained`` builds every governed linear with a bias or none."""
    config = getattr(model, "config", None)
    for switch in ("attention_bias", "mlp_bias"):
        if config is None or getattr(config, switch, None) is not False:
            continue
        linears = _switched_linears(model, switch)
        if not any(linear.bias is not None for linear in linears):
            continue
        for linear in linears:
            if linear.bias is None:
                weight = linear.weight
                linear.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device),
                                           requires_grad=weight.requires_grad)
        setattr(config, switch, True)

