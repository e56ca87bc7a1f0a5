"""The torch backend: hand back the user's own model class after passes edited its tensors.

Passes change parameters through their bindings (``param.data = smaller``), which replaces the tensors on
the working copy of the model, but the modules still carry the sizes they were built with
(``nn.Linear.out_features``, ``Conv2d.groups``, ``BatchNorm2d.num_features``...). Those attributes are read
by ``repr``, by ``save_pretrained``/``from_pretrained`` round trips and by some forward code, so
:func:`finalize_module` re-derives them from the tensors now present, checks that each module's tensors
agree with one another, and returns ``graph.module``: the same class as the user's model.

Fix-ups are kept in a registry so later passes can add their own (Hugging Face config head counts,
``intermediate_size``) without editing this file::

    @register_module_fixup(LlamaAttention)
    def fix_heads(module, path, graph): ...

A fix-up is called for every submodule it matches (a class, or a predicate on the module) with the module,
its path in the model and the graph, in registration order.
"""

from __future__ import annotations

from typing import Callable, Union

import torch
from torch import nn

from ..errors import BackendError
from ..ir import Graph
from .size_attributes import apply_rules, graph_rules

__all__ = ["ModuleFixup", "register_module_fixup", "finalize_module"]

ModuleFixup = Callable[[nn.Module, str, Graph], None]
_Matcher = Union[type, Callable[[nn.Module], bool]]
_FIXUPS: list[tuple[_Matcher, ModuleFixup]] = []


def register_module_fixup(cls_or_predicate: _Matcher) -> Callable[[ModuleFixup], ModuleFixup]:
    """Register ``fixup(module, path, graph)`` for submodules that are instances of a class or satisfy a
    predicate; :func:`finalize_module` runs it after the passes."""

    def register(fixup: ModuleFixup) -> ModuleFixup:
        _FIXUPS.append((cls_or_predicate, fixup))
        return fixup

    return register


def _matches(matcher: _Matcher, module: nn.Module) -> bool:
    return isinstance(module, matcher) if isinstance(matcher, type) else bool(matcher(module))


def finalize_module(graph: Graph) -> nn.Module:
    """Make every module's structural attributes agree with its tensors and return ``graph.module``."""
    if graph.origin != "torch" or graph.module is None:
        raise BackendError(f"finalize_module needs a graph traced from a torch model, got origin={graph.origin!r}")
    for value in graph.constants:  # passes may have replaced tensors: refresh the IR's view of them
        value.sync_from_param()
    # Rules learned by trial (size_attributes) first: fix_config records every module's numbers for reloading.
    apply_rules(graph.module, graph_rules(graph))
    for path, module in graph.module.named_modules():
        for matcher, fixup in _FIXUPS:
            if _matches(matcher, module):
                fixup(module, path, graph)
    return graph.module


# -- built-in fix-ups --------------------------------------------------------------------------------
def _require(condition: bool, path: str, module: nn.Module, message: str) -> None:
    if not condition:
        raise BackendError(f"{path or '<root>'} ({type(module).__name__}): {message}; the pass that edited it "
                           f"left the module inconsistent")


@register_module_fixup(nn.Linear)
def _fix_linear(module: nn.Linear, path: str, graph: Graph) -> None:
    out_features, in_features = module.weight.shape
    if module.bias is not None:
        _require(module.bias.shape == (out_features,), path, module,
                 f"bias has {tuple(module.bias.shape)} entries for {out_features} outputs")
    module.out_features, module.in_features = out_features, in_features


def _graph_groups(graph: Graph, path: str) -> int | None:
    """The ``group`` attribute of the graph's Conv for this module: passes keep it current."""
    for node in graph.nodes:
        if node.scope == path and node.op in ("Conv", "ConvTranspose") and node.domain == "":
            return int(node.attrs.get("group", 1))
    return None


@register_module_fixup(nn.modules.conv._ConvNd)
def _fix_conv(module: nn.modules.conv._ConvNd, path: str, graph: Graph) -> None:
    weight = module.weight
    groups = _graph_groups(graph, path)
    if groups is None:
        # Not in the graph (an unused branch): a depthwise conv stays depthwise, other groupings keep count.
        per_group_out = module.out_channels // module.groups
        depthwise = module.groups > 1 and module.groups == module.in_channels
        groups = weight.shape[1 if module.transposed else 0] // per_group_out if depthwise else module.groups
    if module.transposed:  # ConvTranspose weight: [in, out / groups, *kernel]
        in_channels, out_channels = weight.shape[0], weight.shape[1] * groups
    else:  # Conv weight: [out, in / groups, *kernel]
        out_channels, in_channels = weight.shape[0], weight.shape[1] * groups
    _require(groups >= 1 and out_channels % groups == 0 and in_channels % groups == 0, path, module,
             f"{in_channels} -> {out_channels} channels do not split into {groups} groups")
    if module.bias is not None:
        _require(module.bias.shape == (out_channels,), path, module,
                 f"bias has {tuple(module.bias.shape)} entries for {out_channels} output channels")
    module.in_channels, module.out_channels, module.groups = in_channels, out_channels, groups


@register_module_fixup(nn.modules.batchnorm._NormBase)
def _fix_batchnorm(module: nn.modules.batchnorm._NormBase, path: str, graph: Graph) -> None:
    tensors = [t for t in (module.weight, module.bias, module.running_mean, module.running_var) if t is not None]
    if not tensors:
        return
    sizes = {t.shape[0] for t in tensors}
    _require(len(sizes) == 1, path, module, f"weight/bias/running statistics disagree on the size: {sorted(sizes)}")
    module.num_features = sizes.pop()


def _has_normalized_shape(module: nn.Module) -> bool:
    # nn.LayerNorm, and layer norms written by hand that keep torch's attribute name (OLMo's weightless one).
    shape = getattr(module, "normalized_shape", None)
    return isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(d, int) for d in shape)


def _graph_normalized_shape(graph: Graph, path: str) -> tuple[int, ...] | None:
    """The normalized dims of the graph's LayerNormalization for this module: value shapes follow pruning."""
    for node in graph.nodes:
        if node.scope == path and node.op == "LayerNormalization" and node.domain == "":
            shape = node.inputs[0].shape
            axis = int(node.attrs.get("axis", -1))
            return tuple(int(d) for d in shape[axis:]) if all(isinstance(d, int) for d in shape[axis:]) else None
    return None


@register_module_fixup(_has_normalized_shape)
def _fix_layernorm(module: nn.Module, path: str, graph: Graph) -> None:
    # A weightless layer norm keeps its width only in normalized_shape: the graph knows the pruned width.
    weight = getattr(module, "weight", None)
    shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else _graph_normalized_shape(graph, path)
    if shape is not None:
        module.normalized_shape = shape if isinstance(module.normalized_shape, tuple) else list(shape)


def _graph_group_count(graph: Graph, path: str) -> int | None:
    """How many groups the graph's group norm of this module has now: the lowering normalizes an
    ``[N, groups, rest]`` view, and pruning whole groups shrinks that axis."""
    for node in graph.nodes:
        if node.scope == path and node.op == "InstanceNormalization" and node.domain == "":
            shape = node.inputs[0].shape
            return int(shape[1]) if shape is not None and len(shape) == 3 and isinstance(shape[1], int) else None
    return None


@register_module_fixup(nn.GroupNorm)
def _fix_groupnorm(module: nn.GroupNorm, path: str, graph: Graph) -> None:
    if module.weight is not None:
        channels = module.weight.shape[0]
        groups = _graph_group_count(graph, path)
        if groups is not None and groups != module.num_groups and channels % groups == 0:
            module.num_groups = groups  # whole groups were pruned (one channel per group, say)
        _require(channels % module.num_groups == 0, path, module,
                 f"{channels} channels do not split into {module.num_groups} groups")
        module.num_channels = channels


@register_module_fixup(nn.Embedding)
def _fix_embedding(module: nn.Embedding, path: str, graph: Graph) -> None:
    module.num_embeddings, module.embedding_dim = module.weight.shape
    if module.padding_idx is not None and module.padding_idx >= module.num_embeddings:
        module.padding_idx = None


@register_module_fixup(nn.PReLU)
def _fix_prelu(module: nn.PReLU, path: str, graph: Graph) -> None:
    module.num_parameters = module.weight.numel()


@register_module_fixup(nn.MultiheadAttention)
def _fix_multihead_attention(module: nn.MultiheadAttention, path: str, graph: Graph) -> None:
    # torch asserts embed_dim == the query's width == num_heads * head_dim; pruning whole heads together with
    # the residual (a width tie) keeps head_dim and changes the other two.
    embed_dim, inner = module.out_proj.weight.shape
    _require(inner == embed_dim, path, module,
             f"its heads are {inner} wide but its input {embed_dim}; nn.MultiheadAttention needs them equal")
    _require(inner % module.head_dim == 0, path, module, f"{inner} channels are no whole number of heads of "
             f"{module.head_dim}")
    module.embed_dim, module.num_heads = embed_dim, inner // module.head_dim
    if module._qkv_same_embed_dim:
        module.kdim = module.vdim = embed_dim
    else:
        module.kdim, module.vdim = module.k_proj_weight.shape[1], module.v_proj_weight.shape[1]


def _is_hf_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D (GPT-2): a linear layer whose weight is stored [in, out].
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and isinstance(module.weight, torch.Tensor)


@register_module_fixup(_is_hf_conv1d)
def _fix_hf_conv1d(module: nn.Module, path: str, graph: Graph) -> None:
    in_features, out_features = module.weight.shape
    if getattr(module, "bias", None) is not None:
        _require(module.bias.shape == (out_features,), path, module,
                 f"bias has {tuple(module.bias.shape)} entries for {out_features} outputs")
    module.nf = out_features
    if hasattr(module, "nx"):
        module.nx = in_features
