"""What a Hugging Face class builds from a config, asked on the meta device, and the two uses graphpress has for it.

A pruned model's config must say widths the class can rebuild, and its checkpoint must hold every tensor the
class would not rebuild alike:

* :func:`set_validated` writes config updates, leaving out those the config's validators or the class refuse or
  with which the class builds other tensors (Mamba-2's ``hidden_size * expand == num_heads * head_dim``, OPT's
  extra projections once ``hidden_size`` differs from ``word_embed_proj_dim``);
* :func:`persist_resized_tensors` makes ``save_pretrained`` write the tensors the class computes when built and
  leaves out of checkpoints (sinusoidal position tables) where pruning resized them.

Building on the meta device costs no memory and no values, so both are asked each time the config fix-up runs.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .hf_checkpoint import build_from_config
from .hf_reload import RECORDED_BUFFER_LIMIT

__all__ = ["set_validated", "persist_resized_tensors"]


def _meta_build(model_class: type, config: Any) -> nn.Module:
    """``model_class`` built from a copy of ``config`` on the meta device: the tensors' shapes, no values or memory
    (cheap enough to ask each time :func:`.hf_fixups.fix_config` runs)."""
    with torch.device("meta"):
        return build_from_config(model_class, copy.deepcopy(config))


def _built_keys(config: Any, model_class: type | None) -> frozenset[str] | None:
    """The state_dict keys of ``model_class`` built from ``config`` on the meta device; None where the config
    fails its own validators (``@strict`` configs of transformers 5) or the class refuses to build from it
    (modules check their own widths: ``embed_dim must be divisible by num_heads``). Without a class: the
    validators alone, an empty set when they accept."""
    try:
        validate = getattr(config, "validate", None)
        if callable(validate):
            validate()
        return frozenset(_meta_build(model_class, config).state_dict()) if model_class is not None else frozenset()
    except Exception:  # noqa: BLE001 - any refusal (StrictDataclassClassValidationError, ValueError...)
        return None


def set_validated(config: Any, updates: dict[str, Any], model_class: type | None = None) -> dict[str, Any]:
    """Write ``updates`` into ``config``, leaving out those it or ``model_class`` refuses; returns the refused.

    Why: ``save_pretrained`` validates the config and :func:`load_pruned` builds the class from it, and both
    may tie a pruned width to one pruning left alone: Mamba-2's validator wants ``hidden_size * expand ==
    num_heads * head_dim`` while the frozen mixer keeps its heads; wav2vec2's attention, built with the config's
    unpruned ``hidden_size``, refuses 3 heads; OPT builds ``project_in``/``project_out`` linears the model does
    not have once ``hidden_size`` differs from ``word_embed_proj_dim``. An update is refused when the config's
    validators fail or the class builds other tensors (or none) from it than from the config before. A refused
    value keeps the old one; :func:`load_pruned` still rebuilds the pruned model from the recorded shapes and
    module scalars. All updates are tried together first (a hidden size and head count may only be valid as a
    pair), then one at a time. A config that failed already takes every update unchecked."""
    reference = _built_keys(config, model_class)
    old = {name: getattr(config, name, _ABSENT) for name in updates}  # Qwen2Config has no head_dim until given one
    for name, value in updates.items():
        setattr(config, name, value)
    if not updates or reference is None or _built_keys(config, model_class) == reference:
        return {}
    for name, value in old.items():
        _put_back(config, name, value)
    refused = {}
    for name, value in updates.items():
        setattr(config, name, value)
        if _built_keys(config, model_class) != reference:
            _put_back(config, name, old[name])
            refused[name] = value
    return refused


#: What :func:`set_validated` remembers for a config attribute that did not exist.
_ABSENT = object()


def _put_back(config: Any, name: str, value: Any) -> None:
    """Set ``config.name`` back to ``value``, or remove it where it was absent."""
    if value is _ABSENT:
        delattr(config, name)
    else:
        setattr(config, name, value)


def _non_persistent_buffers(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Every buffer ``state_dict`` leaves out, by its full key: (owning module, attribute name)."""
    found = {}
    for path, module in model.named_modules():
        for name in module._non_persistent_buffers_set:
            if module._buffers.get(name) is not None:
                found[f"{path}.{name}" if path else name] = (module, name)
    return found


def _built_shapes(model: nn.Module) -> dict[str, tuple[int, ...]] | None:
    """Every tensor's shape (parameters, persistent and non-persistent buffers, by full key) in a fresh model of
    ``model``'s class built from its config (:func:`_meta_build`), or None where the class can't be built so."""
    try:
        fresh = _meta_build(type(model), model.config)
    except Exception:  # noqa: BLE001 - any failure: the caller falls back
        return None
    shapes = {key: tuple(t.shape) for key, t in fresh.named_parameters(remove_duplicate=False)}
    shapes.update({key: tuple(t.shape) for key, t in fresh.named_buffers(remove_duplicate=False)})
    return shapes


def persist_resized_tensors(model: nn.Module) -> list[str]:
    """Make ``save_pretrained`` write the tensors it leaves out whose shape a build from the config would not
    give: non-persistent buffers become persistent, keys leave the model's ``_keys_to_ignore_on_save``.

    Why: modules compute such tensors from the config when they are built (SpeechT5's sinusoidal position
    buffers, Marian's sinusoidal position embeddings, which it does not save), ``d_model`` wide; pruning slices
    their channels, and no config width rebuilds the sliced values (a table computed for 48 channels is not 48
    of the 64 channels' columns). Which tensors differ is told by building the class from the model's config
    (on the meta device); :func:`fix_config` asks before and after it updates the config. Where that build
    fails, every non-persistent buffer too large to be recorded by value (:func:`module_scalars`) is kept.
    Returns the keys this call made saved."""
    built = _built_shapes(model)
    saved = []
    for key, (module, name) in _non_persistent_buffers(model).items():
        buffer = module._buffers[name]
        differs = built.get(key) != tuple(buffer.shape) if built is not None else buffer.numel() > RECORDED_BUFFER_LIMIT
        if differs and buffer.device.type != "meta":
            module._non_persistent_buffers_set.discard(name)
            saved.append(key)
    ignored = getattr(model, "_keys_to_ignore_on_save", None)
    if built is not None and ignored:
        own = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers())}
        differ = {key for key in ignored if key in own and built.get(key) != tuple(own[key].shape)}
        if differ:
            model._keys_to_ignore_on_save = set(ignored) - differ
            saved += sorted(differ)
    return saved
