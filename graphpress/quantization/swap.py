"""Swap a model's ``nn.Linear`` modules for :class:`QuantizedLinear`, and save/load such models.

Selection is by glob patterns on module names (``ignore=("lm_head", "*.mlp.down_proj")``). A quantized
Hugging Face model saves with its own ``save_pretrained``: the packed buffers go into the safetensors file
and a small ``graphpress_quantization`` entry in ``config.json`` records, per quantized module, its
``bits``/``group``/``act_bits``. :func:`load_quantized` reads that entry back: it builds the architecture
from the config, puts ``QuantizedLinear`` skeletons where the entry says, and loads the state dict
strictly, so a missing or unexpected tensor is an error rather than a silently random layer.

    model.save_pretrained(folder); tokenizer.save_pretrained(folder)
    model = graphpress.quantization.load_quantized(folder)
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from graphpress.errors import BackendError
from graphpress.quantization.module import QuantizedLinear

__all__ = ["CONFIG_KEY", "select_linears", "keep_float_patterns", "is_plain_linear", "matches_on_probe", "set_module",
           "quantization_config", "attach_quantization_config", "quantize_skeleton", "load_quantized"]

CONFIG_KEY = "graphpress_quantization"


def _matches(name: str, patterns: Iterable[str]) -> bool:
    # A pattern matches the full name or any dotted suffix of it, so "lm_head" and "*.down_proj" both work.
    parts = name.split(".")
    suffixes = [".".join(parts[i:]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(suffix, pattern) for pattern in patterns for suffix in suffixes)


def keep_float_patterns(model: nn.Module) -> tuple[str, ...]:
    """Module names the model's class says must stay in float: Hugging Face's ``_keep_in_fp32_modules``.

    Their forward code reads the float weight itself (T5's feed-forward checks ``wo.weight.dtype`` before
    the projection), so swapping them would break the model; Hugging Face's own quantizers skip them too."""
    return tuple(getattr(model, "_keep_in_fp32_modules", None) or ())


def is_plain_linear(module: nn.Module) -> bool:
    """True for an ``nn.Linear``, or a subclass whose forward still computes ``x @ weight.T + bias``.

    Subclasses that only rewrite the product (Falcon's ``FalconLinear``) are linears to quantize; one that
    adds anything (an adapter, a scale) is not. Probed once on a small random input, since the class's source
    says nothing reliable; weights on the meta device can't be probed and only exact ``nn.Linear`` counts."""
    if type(module) is nn.Linear:
        return True
    if not isinstance(module, nn.Linear) or module.weight.is_meta:
        return False
    weight = module.weight
    probe = torch.randn(2, module.in_features, generator=torch.Generator().manual_seed(0)).to(weight)
    with torch.no_grad():
        want = nn.functional.linear(probe, weight, module.bias)
    return matches_on_probe(module, probe, want, rtol=1e-3, atol=1e-5)


def matches_on_probe(module: nn.Module, probe: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> bool:
    """Whether ``module(probe)`` is a tensor of ``want``'s shape and values (within ``rtol``/``atol``): how a
    module whose class says nothing reliable is checked to compute a linear map. A forward that fails on one
    tensor (it needs more inputs) does not match."""
    with torch.no_grad():
        try:
            got = module(probe)
        except Exception:  # noqa: BLE001 (a forward that needs more than one tensor is not a linear map)
            return False
    return isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got, want, rtol=rtol,
                                                                                       atol=atol)


def select_linears(model: nn.Module, ignore: Iterable[str] = (), targets: Iterable[str] = ("*",)) -> dict[str, nn.Module]:
    """``{name: linear}`` whose full name matches a ``targets`` glob and that matches no ``ignore`` glob (nor
    the model's own :func:`keep_float_patterns`), in module order; subclasses of ``nn.Linear`` count where
    :func:`is_plain_linear`, and fused sibling projections (:class:`FusedLinear`, one weight for q/k/v or
    gate/up) count as one linear whose quantized layer keeps their split outputs.

    ``ignore`` globs also match any dotted suffix of a name (``lm_head``), but ``targets`` match the full name
    only: the ``quantize`` pass passes exact module names, and ``proj`` must not also select ``block.proj``."""
    from graphpress.backends.fused_linear import FusedLinear

    ignore, targets = tuple(ignore) + keep_float_patterns(model), tuple(targets)
    return {
        name: module
        for name, module in model.named_modules()
        if ((isinstance(module, nn.Linear) and is_plain_linear(module)) or isinstance(module, FusedLinear))
        and any(fnmatch.fnmatchcase(name, target) for target in targets) and not _matches(name, ignore)
    }


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name``."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quantization_config(model: nn.Module) -> dict[str, Any]:
    """The json-able description of every :class:`QuantizedLinear` in ``model``; a fused one (projections fused
    before quantizing) also records its ``split_sizes`` and the projections it ``fuses``, so that
    :func:`load_quantized` installs the same fusion in a fresh model."""
    from graphpress.backends.fused_linear import SiblingSlice

    siblings: dict[int, list[tuple[int, str]]] = {}
    for name, m in model.named_modules():
        if isinstance(m, SiblingSlice):
            siblings.setdefault(id(m.fused), []).append((m.index, name))
    modules = {}
    for name, m in model.named_modules():
        if not isinstance(m, QuantizedLinear):
            continue
        modules[name] = {"bits": m.bits, "group": m.group, "act_bits": m.act_bits, "bias": m.bias is not None,
                         "in_features": m.in_features, "out_features": m.out_features}
        if m.split_sizes and id(m) in siblings:
            modules[name].update(split_sizes=m.split_sizes, fuses=[n for _, n in sorted(siblings[id(m)])])
    return {"format": "graphpress-packed-v1", "modules": modules}


def attach_quantization_config(model: nn.Module) -> None:
    """Record the quantization in ``model.config`` so ``save_pretrained`` writes it to config.json."""
    config = getattr(model, "config", None)
    if config is not None:
        setattr(config, CONFIG_KEY, quantization_config(model))


def quantize_skeleton(model: nn.Module, description: dict[str, Any]) -> None:
    """Put empty :class:`QuantizedLinear` modules where ``description`` (see :func:`quantization_config`) says."""
    from graphpress.backends.fused_linear import install_fused

    for name, spec in description["modules"].items():
        fuses = spec.get("fuses")
        source = fuses[0] if fuses else name  # a fused layer shares its first projection's input width and dtype
        try:
            linear = model.get_submodule(source)
        except AttributeError:
            raise BackendError(f"quantization config names {source}, which the model does not have") from None
        # Pruned models have other widths than their config says: the recorded sizes win.
        in_features = spec.get("in_features", linear.in_features)
        out_features = spec.get("out_features", linear.out_features)
        skeleton = QuantizedLinear(in_features, out_features, bits=spec["bits"], group=spec["group"],
                                   bias=spec["bias"], act_bits=spec.get("act_bits"), dtype=linear.weight.dtype,
                                   split_sizes=spec.get("split_sizes"))
        if fuses:  # saved with its projections fused: the same fusion, then the fused weights load
            install_fused(model, fuses, skeleton, name, spec["split_sizes"])
        else:
            set_module(model, name, skeleton)


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
        raise BackendError(f"{folder} has no model.safetensors (save with save_pretrained(safe_serialization=True))")
    return load_file(single)


def load_quantized(folder: str | Path) -> nn.Module:
    """Load a Hugging Face folder saved from a graphpress-quantized model (see the module docstring)."""
    import transformers

    folder = Path(folder)
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    description = getattr(config, CONFIG_KEY, None)
    if not description:
        raise BackendError(f"{folder}/config.json has no '{CONFIG_KEY}' entry: not a graphpress-quantized model")
    architecture = (config.architectures or [None])[0]
    model_class = getattr(transformers, architecture or "", None)
    if model_class is None:
        raise BackendError(f"config.json names architecture {architecture!r}, unknown to transformers")
    model = model_class(config)
    recorded_shapes = getattr(config, "graphpress_shapes", None)
    if recorded_shapes:  # pruned as well as quantized: resize the float tensors first
        from graphpress.backends.hf_reload import apply_recorded_shapes

        apply_recorded_shapes(model, recorded_shapes)
    quantize_skeleton(model, description)
    state = _read_state_dict(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise BackendError(f"state dict mismatch loading {folder}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    if recorded_shapes:
        from graphpress.backends.hf_reload import refresh_attributes

        refresh_attributes(model)
    return model.eval()
