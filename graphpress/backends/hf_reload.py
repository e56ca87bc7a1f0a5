"""Loading back a model saved after graphpress pruning, whatever its layers' widths (:func:`load_pruned`).

Layers of different widths (``scope=global``) can't be said by a standard Hugging Face config. The config
fix-up (:mod:`.hf_fixups`) therefore records every tensor's shape (``graphpress_shapes``) and modules' numbers
(``graphpress_module_scalars``, :func:`module_scalars`); :func:`load_pruned` builds the class from the config,
shrinks each tensor to its recorded shape, loads the weights, re-runs the module fix-ups without a graph
(:func:`refresh_attributes`) and puts the recorded numbers back.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..errors import BackendError
from .hf_checkpoint import build_from_config, to_model_keys

__all__ = ["load_pruned", "apply_recorded_shapes", "module_scalars", "refresh_attributes", "RECORDED_BUFFER_LIMIT"]


#: Non-persistent buffers up to this many elements are recorded by value (rotary tables: head_dim / 2).
RECORDED_BUFFER_LIMIT = 4096


def module_scalars(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every submodule's plain number attributes and small non-persistent buffers, by module path.

    Modules derive sizes and constants from the config when they are built (``head_dim = hidden_size //
    num_heads``, a rotary ``inv_freq`` of ``head_dim / 2`` entries, Gemma's ``embed_scale = hidden_size ** 0.5``);
    after pruning the config can't say them all (a pruned hidden size with an unpruned head size), so
    :func:`load_pruned` puts back the values the pruned model had instead of the ones its config implies.
    Tuples of integers count too: a LayerNorm without weights (data2vec-audio's positional convolution) keeps
    its pruned width only in ``normalized_shape``. Buffers ``save_pretrained`` does not write are recorded as
    (nested) lists.
    """
    recorded: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        values = {name: value for name, value in vars(module).items()
                  if not name.startswith("_") and name != "training" and _is_plain(value)}
        for name in module._non_persistent_buffers_set:
            buffer = module._buffers.get(name)
            if buffer is not None and buffer.numel() <= RECORDED_BUFFER_LIMIT and buffer.device.type != "meta":
                values[name] = buffer.tolist()
        if values:
            recorded[path] = values
    return recorded


#: Tuples of integers up to this length are recorded (shapes, kernel sizes), longer ones are not sizes.
_RECORDED_TUPLE_LIMIT = 16


def _is_plain(value: Any) -> bool:
    """A number, or a short tuple of integers (``normalized_shape``): what :func:`module_scalars` records."""
    if type(value) in (int, float, bool):
        return True
    return type(value) is tuple and 0 < len(value) <= _RECORDED_TUPLE_LIMIT and all(type(v) is int for v in value)


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
            elif type(getattr(module, name, None)) is tuple and isinstance(value, list):  # JSON made it a list
                setattr(module, name, tuple(value))


def apply_recorded_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Replace every tensor whose recorded shape differs by an empty one of that shape (before loading).

    A recorded key that names a non-persistent buffer was saved (:func:`persist_resized_tensors`): the buffer is
    made persistent here, so ``load_state_dict`` fills it."""
    for key, shape in shapes.items():
        path, _, attr = key.rpartition(".")
        try:
            owner = model.get_submodule(path) if path else model
        except AttributeError:
            continue
        if attr in owner._non_persistent_buffers_set:
            owner._non_persistent_buffers_set.discard(attr)  # saved by persist_resized_tensors: loaded, saved again
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
    missing = [k for k in missing if k not in _tied_keys(model) | _unsaved_keys(model)]
    _keep_saving(model, set(state))
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
    """Keys ``save_pretrained`` leaves out as copies of another (tied weights), submodels' ties included.

    transformers 5 gathers every submodel's ties in ``all_tied_weights_keys`` (BART ties its encoder's and
    decoder's ``embed_tokens`` to ``shared`` in the base model, not in the class with the LM head); older
    versions keep one list per class, read here from every submodule with its path."""
    tied = getattr(model, "all_tied_weights_keys", None)
    if isinstance(tied, dict):
        return set(tied)
    keys: set[str] = set()
    for path, module in model.named_modules():
        own = getattr(module, "_tied_weights_keys", None) or {}
        keys |= {f"{path}.{key}" if path else key for key in own}
    return keys


def _unsaved_keys(model: nn.Module) -> set[str]:
    """Keys the class leaves out of its checkpoints (``_keys_to_ignore_on_save``) because it computes them when
    built; those whose shape pruning changed were saved anyway (:func:`persist_resized_tensors`)."""
    return set(getattr(model, "_keys_to_ignore_on_save", None) or ())


def _keep_saving(model: nn.Module, loaded: set[str]) -> None:
    """Keep saving what the checkpoint held beyond the class's own choice, so a reloaded model saves alike."""
    ignored = _unsaved_keys(model)
    if ignored & loaded:
        model._keys_to_ignore_on_save = ignored - loaded


def refresh_attributes(model: nn.Module) -> None:
    """Run the module fix-ups on a model that has no graph (sizes from tensors only)."""
    from .hf_fixups import fix_config
    from .torch_module import _FIXUPS, _matches

    class _NoGraph:
        nodes: list = []

    for path, module in model.named_modules():
        for matcher, fixup in _FIXUPS:
            if _matches(matcher, module) and fixup is not fix_config:
                fixup(module, path, _NoGraph())
