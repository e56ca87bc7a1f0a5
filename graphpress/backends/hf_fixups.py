"""Hugging Face fix-ups after structured pruning, and the loader for models whose layers differ in width.

Module-preserving pruning hands back the user's class. Generic layers (``nn.Linear``...) are fixed by
:mod:`.torch_module`; this file adds what Hugging Face models keep beside their tensors:

* attention modules' head counts (``num_heads``, ``num_key_value_heads``, ``all_head_size``, GPT-2's
  ``split_size`` (its cross-attention's too), T5's ``n_heads`` and ``inner_dim``, Phi-3's fused ``qkv_proj``
  split, which reads ``self.config``), derived from the projection weights and ``head_dim`` (never pruned);
* the config: ``hidden_size``, ``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads`` and an
  explicit ``head_dim`` when every layer has the same widths, so ``save_pretrained`` + the class's own
  ``from_pretrained`` reload it. Every pruned model also records ``graphpress_layer_widths`` (per layer) and
  ``graphpress_shapes`` (every tensor's shape) in its config;
* mixture-of-experts widths (fused experts, top-k routers, ``moe_intermediate_size``): :mod:`.hf_moe`;
* linear biases a pass created (``compensate-bias``): where the config has a switch for them
  (``attention_bias``, ``mlp_bias`` of Llama-style models) it is turned on and the other linears it governs
  get zero biases, so the class's own ``from_pretrained`` builds the same modules and the saved biases load.

Layers of different widths (``scope=global``) can't be expressed by the standard config; save them with
``model.save_pretrained(folder)`` as usual and reload with :func:`load_pruned`, which builds the model from
the config, shrinks every tensor to its recorded shape, re-runs these fix-ups and loads the weights.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import torch
from torch import nn

from ..errors import BackendError
from ..ir import Graph
from .hf_checkpoint import build_from_config, to_model_keys
from .hf_moe import experts_widths, is_fused_experts, moe_config_updates
from .torch_module import register_module_fixup

__all__ = ["fix_attention_heads", "fix_config", "fix_bias_switches", "layer_widths", "load_pruned",
           "apply_recorded_shapes", "refresh_attributes", "input_embeddings", "module_scalars"]

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
    embeddings = input_embeddings(model)
    weight = getattr(embeddings, "weight", None)
    return int(weight.shape[1]) if weight is not None else None


_CONFIG_KEYS = {"num_attention_heads": ("num_attention_heads", "n_head"),
                "num_key_value_heads": ("num_key_value_heads",),
                "intermediate_size": ("intermediate_size", "n_inner")}


@register_module_fixup(lambda m: hasattr(m, "config") and hasattr(m, "save_pretrained"))
def fix_config(module: nn.Module, path: str, graph: Graph) -> None:
    """Keep the config in step with the tensors (the root model only)."""
    if path:
        return
    config = module.config
    widths = layer_widths(module)
    hidden = _hidden_size(module)
    head_dim = next((_head_dim(m) for m in module.modules() if _is_attention(m)), None)
    if hidden is not None and isinstance(getattr(config, "hidden_size", None), int):
        config.hidden_size = hidden
    if head_dim is not None and "head_dim" in config.to_dict():
        config.head_dim = head_dim
    elif head_dim is not None and hasattr(config, "num_attention_heads") and widths and \
            type(config).__name__ in ("LlamaConfig", "MistralConfig", "Qwen2Config", "MixtralConfig"):
        config.head_dim = head_dim
    for key, names in _CONFIG_KEYS.items():
        values = {w[key] for w in widths if key in w}
        if key == "num_attention_heads" and values and hidden is not None and hidden % next(iter(values)):
            continue  # the config validator would refuse it: keep the old count, load with load_pruned()
        if len(values) == 1:
            for name in names:
                # A per-stage list (SegFormer's num_attention_heads=[1, 2, 5, 8]) is not one width to overwrite.
                if isinstance(getattr(config, name, None), int):
                    setattr(config, name, next(iter(values)))
    for name, value in moe_config_updates(config, widths).items():
        setattr(config, name, value)
    fix_bias_switches(module)
    config.graphpress_layer_widths = widths
    config.graphpress_shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    config.graphpress_module_scalars = module_scalars(module)


#: Non-persistent buffers up to this many elements are recorded by value (rotary tables: head_dim / 2).
_RECORDED_BUFFER_LIMIT = 4096


def module_scalars(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every submodule's plain number attributes and small non-persistent buffers, by module path.

    Modules derive sizes and constants from the config when they are built (``head_dim = hidden_size //
    num_heads``, a rotary ``inv_freq`` of ``head_dim / 2`` entries, Gemma's ``embed_scale = hidden_size ** 0.5``);
    after pruning the config can't say them all (a pruned hidden size with an unpruned head size), so
    :func:`load_pruned` puts back the values the pruned model had instead of the ones its config implies.
    Buffers ``save_pretrained`` does not write are recorded as (nested) lists.
    """
    recorded: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        values = {name: value for name, value in vars(module).items()
                  if not name.startswith("_") and name != "training" and type(value) in (int, float, bool)}
        for name in module._non_persistent_buffers_set:
            buffer = module._buffers.get(name)
            if buffer is not None and buffer.numel() <= _RECORDED_BUFFER_LIMIT and buffer.device.type != "meta":
                values[name] = buffer.tolist()
        if values:
            recorded[path] = values
    return recorded


def _restore_scalars(model: nn.Module, recorded: dict[str, dict[str, Any]]) -> None:
    for path, values in recorded.items():
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError:
            continue
        for name, value in values.items():
            buffer = module._buffers.get(name)
            if buffer is not None:
                module._buffers[name] = torch.tensor(value, dtype=buffer.dtype, device=buffer.device)
            elif type(getattr(module, name, None)) is type(value):
                setattr(module, name, value)


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


def apply_recorded_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Replace every tensor whose recorded shape differs by an empty one of that shape (before loading)."""
    for key, shape in shapes.items():
        path, _, attr = key.rpartition(".")
        try:
            owner = model.get_submodule(path) if path else model
        except AttributeError:
            continue
        current = getattr(owner, attr, None)
        if current is None and attr in owner._parameters:
            # A parameter graphpress created (a compensated bias) where the class builds none.
            like = next(owner.parameters(), None)
            dtype = like.dtype if like is not None else torch.get_default_dtype()
            setattr(owner, attr, nn.Parameter(torch.empty(shape, dtype=dtype, device=like.device if like is not None
                                                          else None)))
            continue
        if not isinstance(current, torch.Tensor) or list(current.shape) == list(shape):
            continue
        fresh = torch.empty(shape, dtype=current.dtype, device=current.device)
        if isinstance(current, nn.Parameter):
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=current.requires_grad))
        else:
            owner._buffers[attr] = fresh


def load_pruned(folder: str | os.PathLike, model_class: Any = None, **kwargs: Any) -> nn.Module:
    """Load a model saved with ``save_pretrained`` after graphpress pruning, whatever its layer widths.

    ``model_class`` defaults to the class named in the config (through ``AutoModel``'s mappings).
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    shapes = getattr(config, "graphpress_shapes", None)
    if not shapes:
        raise BackendError(f"{folder} holds no graphpress_shapes in its config: it was not pruned by graphpress;"
                           " load it with from_pretrained")
    if model_class is None:
        arch = (getattr(config, "architectures", None) or [""])[0]
        model_class = AutoModelForCausalLM if "CausalLM" in arch or "LMHead" in arch else AutoModel
    model = build_from_config(model_class, config, **kwargs)
    apply_recorded_shapes(model, shapes)
    state = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            state.update(load_file(os.path.join(folder, name)))
    if not set(state) <= set(model.state_dict()):  # saved in the original format (save_original_format=True)
        state = to_model_keys(model, state, _tied_keys(model)) or state
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise BackendError(f"load_pruned({folder}): missing {missing[:5]}, unexpected {unexpected[:5]}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    scalars = getattr(config, "graphpress_module_scalars", None) or {}
    # Before the fix-ups too: some re-derive from a recorded count (a GroupNorm pruned by whole groups keeps
    # num_groups only there); after, because others re-derive from the config what the pruned model changed.
    _restore_scalars(model, scalars)
    refresh_attributes(model)
    _restore_scalars(model, scalars)
    return model.eval()


def _tied_keys(model: nn.Module) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if not isinstance(tied, dict) else tied.keys())


def refresh_attributes(model: nn.Module) -> None:
    """Run the module fix-ups on a model that has no graph (sizes from tensors only)."""
    from .torch_module import _FIXUPS, _matches

    class _NoGraph:
        nodes: list = []

    for path, module in model.named_modules():
        for matcher, fixup in _FIXUPS:
            if _matches(matcher, module) and fixup is not fix_config:
                fixup(module, path, _NoGraph())
