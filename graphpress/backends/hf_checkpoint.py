"""Read a checkpoint that ``save_pretrained`` wrote in the *original* format back into a model's own keys.

transformers 5.x converts some weights on load (per-expert ``experts.N.w1/w2/w3`` of Mixtral become fused
``experts.gate_up_proj``/``down_proj``; renamings of older layouts) and reverts that conversion on save,
so a saved folder need not hold the model's own state_dict keys. ``from_pretrained`` converts again, but
it builds every layer from the config, which can't express the per-layer widths graphpress pruning may
leave; :func:`graphpress.backends.hf_reload.load_pruned` therefore builds the model at the recorded shapes
itself and needs the checkpoint in the model's keys.

Rather than re-implement each conversion, :func:`to_model_keys` runs transformers' own save-time revert
(``revert_weight_conversion``) on *marker* tensors: every element of the model's state holds its global
position (float64, exact up to 2**53 elements). Each saved tensor then says, element by element, where
its values go. This inverts any conversion that only moves data (renames, splits, concatenations,
stacking, transposes), whatever the architecture; markers cost 8 bytes per parameter while loading.
"""

from __future__ import annotations

import torch

__all__ = ["build_from_config", "to_model_keys"]


def build_from_config(model_class, config, **kwargs) -> torch.nn.Module:
    """A model of ``model_class`` with fresh weights, built from ``config``: Auto classes take ``from_config``,
    concrete ones (``LlamaForCausalLM``, ``BertModel``...) ``_from_config`` (they have no ``from_config``)."""
    build = getattr(model_class, "from_config", None) or getattr(model_class, "_from_config", None) or model_class
    return build(config, **kwargs)


def to_model_keys(model: torch.nn.Module, saved: dict[str, torch.Tensor],
                  skip: set[str] | frozenset = frozenset()) -> dict[str, torch.Tensor] | None:
    """``saved`` (original-format keys) as the model's own state_dict, or None when it does not match.

    ``skip``: model keys absent from the checkpoint by design (tied weights)."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # a transformers without weight conversions: nothing to invert
        return None
    own = model.state_dict()
    markers, spans, start = {}, {}, 0
    for key, tensor in own.items():
        markers[key] = torch.arange(start, start + tensor.numel(), dtype=torch.float64).reshape(tensor.shape)
        spans[key] = (start, tensor)
        start += tensor.numel()
    reverted = revert_weight_conversion(model, markers)
    if not set(saved) <= set(reverted) or any(reverted[k].shape != saved[k].shape for k in saved):
        return None
    values = torch.empty(start, dtype=torch.float64)
    filled = torch.zeros(start, dtype=torch.bool)
    for key, tensor in saved.items():
        positions = reverted[key].reshape(-1).long()
        values[positions] = tensor.reshape(-1).to(torch.float64)
        filled[positions] = True
    result = {}
    for key, (s, t) in spans.items():
        if bool(filled[s:s + t.numel()].all()):
            result[key] = values[s:s + t.numel()].reshape(t.shape).to(t.dtype)
        elif key not in skip:  # a weight the checkpoint does not hold: not this model's checkpoint
            return None
    return result
