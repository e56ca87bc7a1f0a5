"""Surgery on the decoder layers of a Hugging Face model: drop layers, resize one, keep the config in step.

Depth passes remove or merge whole decoder layers of the user's own model. Whatever they do, four things
must stay consistent or ``generate()`` and ``from_pretrained()`` break:

* ``config.num_hidden_layers`` (the model's forward slices ``layers[:num_hidden_layers]`` and the
  ``DynamicCache`` allocates one slot per layer) and ``config.layer_types`` when the config has it;
* each attention module's ``layer_idx``, the slot it reads and writes in the KV cache;
* ``config.graphpress_layer_map``: for each current layer, the ``[first, last]`` span of ORIGINAL layers
  it stands for (a merged layer replaces a span; a kept layer absorbs the dropped layers after it). The
  ``distill`` pass reads it to pair each student layer with the teacher layers it must imitate;
* ``config.graphpress_layer_widths``: per-layer head counts and MLP width, written only when layers
  differ, because Hugging Face builds every layer from the same config sizes. :func:`load_pretrained` is
  the loader for such a folder (it resizes the layers before loading the weights); a uniform model
  saves and loads with the plain ``from_pretrained``.

Only Llama-style layers are understood (``self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``,
``input_layernorm``, ``post_attention_layernorm``): Llama, Mistral, Qwen2, SmolLM and their kin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ...backends.hf_checkpoint import build_from_config
from ...calibration import find_blocks
from ...errors import PassError

__all__ = [
    "LAYER_MAP_KEY",
    "LAYER_WIDTHS_KEY",
    "decoder_layers",
    "check_llama_layer",
    "layer_map",
    "layer_width",
    "drop_layers",
    "replace_linear",
    "record_layer_widths",
    "apply_layer_widths",
    "load_pretrained",
]

LAYER_MAP_KEY = "graphpress_layer_map"
LAYER_WIDTHS_KEY = "graphpress_layer_widths"
_ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(path, ModuleList)`` of the decoder layers; PassError when the model has no config or no layers."""
    if getattr(model, "config", None) is None or not hasattr(model.config, "num_hidden_layers"):
        raise PassError(f"depth passes need a Hugging Face model with a config.num_hidden_layers; "
                        f"{type(model).__name__} has none")
    try:
        return find_blocks(model)
    except Exception as exc:  # find_blocks raises GraphpressError or AttributeError on odd models
        raise PassError(f"could not find the decoder layers of {type(model).__name__}: {exc}") from exc


def check_llama_layer(layer: nn.Module, index: int) -> None:
    """Raise PassError unless ``layer`` has the Llama-style submodules the depth passes edit."""
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    missing = [f"self_attn.{n}" for n in _ATTENTION_PROJECTIONS if not isinstance(getattr(attention, n, None), nn.Linear)]
    missing += [f"mlp.{n}" for n in _MLP_PROJECTIONS if not isinstance(getattr(mlp, n, None), nn.Linear)]
    missing += [n for n in ("input_layernorm", "post_attention_layernorm") if not hasattr(layer, n)]
    if missing:
        raise PassError(f"decoder layer {index} ({type(layer).__name__}) is not Llama-style: it lacks "
                        f"{', '.join(missing)}; depth merging supports Llama/Mistral/Qwen2-style layers")
    if any(hasattr(attention, n) for n in ("q_norm", "k_norm")):
        raise PassError(f"decoder layer {index} normalizes q/k per head (q_norm/k_norm): heads of two "
                        "layers cannot share one such norm, so merging is not supported for this model")


def layer_map(model: nn.Module) -> list[list[int]]:
    """``[first, last]`` original-layer span of each current layer (identity when never restructured)."""
    _, layers = decoder_layers(model)
    spans = getattr(model.config, LAYER_MAP_KEY, None)
    if spans is None:
        return [[i, i] for i in range(len(layers))]
    spans = [list(map(int, span)) for span in spans]
    if len(spans) != len(layers):
        raise PassError(f"config.{LAYER_MAP_KEY} lists {len(spans)} layers but the model has {len(layers)}")
    return spans


def layer_width(layer: nn.Module) -> dict[str, int]:
    """Head counts and MLP width of one Llama-style layer, read from its tensors."""
    attention = layer.self_attn
    head_dim = attention.head_dim
    return {
        "num_attention_heads": attention.q_proj.out_features // head_dim,
        "num_key_value_heads": attention.k_proj.out_features // head_dim,
        "intermediate_size": layer.mlp.up_proj.out_features,
    }


def _renumber(layers: nn.ModuleList) -> None:
    """Give every module that indexes the KV cache the position of its layer."""
    for index, layer in enumerate(layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index


def drop_layers(model: nn.Module, drop: Sequence[int], spans: list[list[int]] | None = None) -> None:
    """Remove the layers ``drop`` (current indices) in place and update indices and the config.

    ``spans`` is the new ``graphpress_layer_map`` of the layers that remain; by default each dropped
    layer's span is absorbed by the kept layer before it (or after it, for leading layers).
    """
    path, layers = decoder_layers(model)
    drop_set = set(drop)
    if not drop_set <= set(range(len(layers))):
        raise PassError(f"cannot drop layers {sorted(drop_set)} of a model with {len(layers)} layers")
    kept = [i for i in range(len(layers)) if i not in drop_set]
    if not kept:
        raise PassError("cannot drop every decoder layer")
    if spans is None:
        spans = _absorbed_spans(layer_map(model), kept)
    config = model.config
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and len(layer_types) == len(layers):
        config.layer_types = [layer_types[i] for i in kept]
    widths = getattr(config, LAYER_WIDTHS_KEY, None)
    if widths is not None and len(widths) == len(layers):
        setattr(config, LAYER_WIDTHS_KEY, [widths[i] for i in kept])
    new_layers = nn.ModuleList([layers[i] for i in kept])
    parent_path, _, attribute = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attribute, new_layers)
    _renumber(new_layers)
    config.num_hidden_layers = len(new_layers)
    setattr(config, LAYER_MAP_KEY, spans)
    record_layer_widths(model)


def _absorbed_spans(spans: list[list[int]], kept: list[int]) -> list[list[int]]:
    """Spans after dropping: each kept layer covers itself and the dropped layers up to the next kept one."""
    result = []
    for position, index in enumerate(kept):
        first = spans[0][0] if position == 0 else spans[index][0]
        last = spans[kept[position + 1] - 1][1] if position + 1 < len(kept) else spans[-1][1]
        result.append([first, last])
    return result


def replace_linear(parent: nn.Module, name: str, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Put a new ``nn.Linear`` holding ``weight`` [out, in] (and ``bias``) at ``parent.name``."""
    old = getattr(parent, name)
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                       device=weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    linear.train(old.training)
    setattr(parent, name, linear)


def _is_llama_layer(layer: nn.Module) -> bool:
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    return (all(isinstance(getattr(attention, n, None), nn.Linear) for n in _ATTENTION_PROJECTIONS)
            and all(isinstance(getattr(mlp, n, None), nn.Linear) for n in _MLP_PROJECTIONS)
            and hasattr(attention, "head_dim"))


def record_layer_widths(model: nn.Module) -> None:
    """Write ``config.graphpress_layer_widths`` when layers differ from the config sizes, else clear it.

    Only Llama-style layers can have been resized (merging refuses the others), so models with other
    layouts (OPT, BERT, GPT-NeoX, ... after prune-depth) keep uniform layers and record nothing."""
    _, layers = decoder_layers(model)
    config = model.config
    if not all(_is_llama_layer(layer) for layer in layers):
        return
    widths = [layer_width(layer) for layer in layers]
    uniform = {"num_attention_heads": config.num_attention_heads,
               "num_key_value_heads": getattr(config, "num_key_value_heads", config.num_attention_heads),
               "intermediate_size": config.intermediate_size}
    if all(width == uniform for width in widths):
        if hasattr(config, LAYER_WIDTHS_KEY):
            delattr(config, LAYER_WIDTHS_KEY)
        return
    setattr(config, LAYER_WIDTHS_KEY, widths)


def apply_layer_widths(model: nn.Module) -> None:
    """Resize freshly built layers to ``config.graphpress_layer_widths`` (weights are loaded afterwards)."""
    widths = getattr(model.config, LAYER_WIDTHS_KEY, None)
    if widths is None:
        return
    _, layers = decoder_layers(model)
    if len(widths) != len(layers):
        raise PassError(f"config.{LAYER_WIDTHS_KEY} has {len(widths)} entries for {len(layers)} layers")
    hidden = model.config.hidden_size
    for layer, width in zip(layers, widths):
        attention, mlp = layer.self_attn, layer.mlp
        head_dim = attention.head_dim
        q_rows = width["num_attention_heads"] * head_dim
        kv_rows = width["num_key_value_heads"] * head_dim
        shapes = {(attention, "q_proj"): (q_rows, hidden), (attention, "k_proj"): (kv_rows, hidden),
                  (attention, "v_proj"): (kv_rows, hidden), (attention, "o_proj"): (hidden, q_rows),
                  (mlp, "gate_proj"): (width["intermediate_size"], hidden),
                  (mlp, "up_proj"): (width["intermediate_size"], hidden),
                  (mlp, "down_proj"): (hidden, width["intermediate_size"])}
        for (parent, name), shape in shapes.items():
            old = getattr(parent, name)
            bias = None if old.bias is None else old.bias.new_zeros(shape[0])
            replace_linear(parent, name, old.weight.new_zeros(shape), bias)
        attention.num_key_value_groups = width["num_attention_heads"] // width["num_key_value_heads"]


def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(folder / shard))
        return state
    single = folder / "model.safetensors"
    if not single.is_file():
        raise PassError(f"{folder} has no model.safetensors: save it with save_pretrained()")
    return load_file(single)


def load_pretrained(folder: str | os.PathLike, model_class: Any = None, **kwargs: Any) -> nn.Module:
    """Load a ``save_pretrained`` folder whose layers may have different widths (graphpress's loader).

    A folder without ``graphpress_layer_widths`` goes straight to ``model_class.from_pretrained``
    (default ``AutoModelForCausalLM``); otherwise the model is built from its config, its layers are
    resized, and the safetensors weights are loaded strictly (tied weights excepted).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    model_class = model_class or AutoModelForCausalLM
    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if getattr(config, LAYER_WIDTHS_KEY, None) is None:
        return model_class.from_pretrained(folder, local_files_only=True, **kwargs)
    model = build_from_config(model_class, config, **kwargs)
    apply_layer_widths(model)
    missing, unexpected = model.load_state_dict(_read_state_dict(folder), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    untied_missing = [key for key in missing if key not in tied]
    if untied_missing or unexpected:
        raise PassError(f"{folder}: weights do not match the recorded layer widths "
                        f"(missing {untied_missing[:5]}, unexpected {unexpected[:5]})")
    model.tie_weights()
    return model.eval()
