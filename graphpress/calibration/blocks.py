"""Find the repeated blocks of a transformer and replay them one at a time on cached activations.

Hugging Face models share one shape: something before the blocks (embeddings, rotary tables, masks), a
``ModuleList`` of identical blocks, something after (final norm, head). Instead of writing per-architecture
code, the inputs of block 0 are *captured*: a forward pre-hook on it records the hidden states and every
other argument the model passes (attention mask, position embeddings, ...) and then stops the forward pass.
Any block can then be replayed on any hidden states with those same extra arguments. This works for
Llama-family decoders and BERT-like encoders alike.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from graphpress.errors import GraphpressError

__all__ = ["find_blocks", "BlockCall", "capture_block_inputs", "capture_block_calls", "check_replayable", "run_block",
           "to_device"]

# Where common architectures keep their blocks; checked before the generic search.
KNOWN_BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "encoder.layer", "bert.encoder.layer",
                     "model.encoder.layer", "layers")


def _parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def find_blocks(model: nn.Module, path: Optional[str] = None) -> tuple[str, nn.ModuleList]:
    """``(qualified name, ModuleList)`` of the model's repeated blocks.

    ``path`` names it explicitly; otherwise a known location is tried, then the ``ModuleList`` of
    same-class modules holding the most parameters.
    """
    if path is not None:
        blocks = model.get_submodule(path)
        if not isinstance(blocks, nn.ModuleList):
            raise GraphpressError(f"{path} is a {type(blocks).__name__}, not a ModuleList of blocks")
        return path, blocks
    for known in KNOWN_BLOCK_PATHS:
        try:
            candidate = model.get_submodule(known)
        except AttributeError:
            continue
        if isinstance(candidate, nn.ModuleList) and len(candidate):
            return known, candidate
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) and len({type(child) for child in module}) == 1
    ]
    if not candidates:
        raise GraphpressError(f"{type(model).__name__} has no ModuleList of repeated blocks; pass blocks=<path>")
    return max(candidates, key=lambda item: _parameter_count(item[1]))


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (tuples, lists, dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(item, device) for item in value)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    return value


@dataclass
class BlockCall:
    """Everything block 0 received in one batch except the hidden states: replayable on any block."""

    args: tuple
    kwargs: dict[str, Any]


class _StopForward(Exception):
    """Raised by the capture hook once block 0's inputs are recorded; nothing after it needs to run."""


def _accepts_use_cache(model: nn.Module) -> bool:
    return "use_cache" in inspect.signature(model.forward).parameters


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, first_block: nn.Module, batches: list[dict[str, Any]]
) -> tuple[list[torch.Tensor], list[BlockCall]]:
    """Hidden states entering ``first_block`` and the other arguments it gets, for each batch."""
    hidden_states: list[torch.Tensor] = []
    calls: list[BlockCall] = []

    def capture(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        kwargs = dict(kwargs)
        if args:
            hidden, rest = args[0], args[1:]
        else:
            hidden, rest = kwargs.pop("hidden_states"), ()
        hidden_states.append(hidden)
        calls.append(BlockCall(rest, kwargs))
        raise _StopForward

    device = next(model.parameters()).device
    extra = {"use_cache": False} if _accepts_use_cache(model) else {}
    handle = first_block.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for batch in batches:
            try:
                model(**to_device(batch, device), **extra)
            except _StopForward:
                continue
            raise GraphpressError(f"the forward pass of {type(model).__name__} never reached its first block")
    finally:
        handle.remove()
    return hidden_states, calls


def _signature(value: Any) -> Any:
    """What must agree for block 0's captured arguments to stand in for another block's: tensors by shape and
    dtype (their values may differ, e.g. per-layer masks), plain values by value, anything else by type."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return tuple(_signature(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, _signature(item)) for key, item in value.items()))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return type(value).__name__


@torch.no_grad()
def check_replayable(model: nn.Module, path: str, blocks: nn.ModuleList, batch: dict[str, Any],
                     *, shape_preserving: bool = False) -> bool:
    """Whether blocks need their own extra arguments (see :func:`capture_block_calls`); raise
    :class:`GraphpressError` when the blocks cannot be replayed one after another, on one full forward pass of
    ``batch``.

    Block-by-block calibration replays every block on the previous block's outputs. A list of *stages*
    breaks that: ConvNeXt's, SegFormer's and Swin's stages change the width or resolution in code between
    blocks. Refusing here, before any callback edits a block, gives the user a clear error instead of a
    shape error halfway through a model. Blocks that receive other masks or biases than block 0 (Gemma's
    alternating sliding-window masks, T5's position bias) return True: the runner then records each block's
    own arguments. ``shape_preserving`` (depth passes, which compare, drop and merge layers) demands
    interchangeable layers: same output shape as input, same extra arguments.
    """
    seen: dict[int, Any] = {}
    outputs: dict[int, Any] = {}
    arguments: dict[int, tuple] = {}

    def record(index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            if index not in seen:
                kwargs = dict(kwargs)
                hidden, rest = (args[0], args[1:]) if args else (kwargs.pop("hidden_states", None), ())
                seen[index] = (_signature(hidden), _signature(rest), _signature(kwargs))
                arguments[index] = (rest, kwargs)
        return hook

    def record_output(index: int):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            outputs.setdefault(index, _signature(output[0] if isinstance(output, (tuple, list)) else output))
        return hook

    handles = [block.register_forward_pre_hook(record(i), with_kwargs=True) for i, block in enumerate(blocks)]
    handles += [block.register_forward_hook(record_output(i)) for i, block in enumerate(blocks)]
    extra = {"use_cache": False} if _accepts_use_cache(model) else {}
    try:
        model(**to_device(batch, next(model.parameters()).device), **extra)
    finally:
        for handle in handles:
            handle.remove()
    if 0 not in seen:
        raise GraphpressError(f"the forward pass of {type(model).__name__} never reached its first block ({path}.0)")
    kind = type(blocks[0]).__name__
    for index in sorted(seen):
        if shape_preserving and outputs.get(index) != seen[index][0]:
            raise GraphpressError(
                f"block {index} of {path} ({kind}) changes the shape of the hidden states: these are stages, "
                f"not layers of one residual stream, so they cannot be compared, dropped or merged")
        # Block i is replayed on block i-1's outputs: something in between that reshapes them cannot be replayed.
        if index and index - 1 in outputs and seen[index][0] != outputs[index - 1]:
            raise GraphpressError(
                f"calibration feeds each block of {path} ({kind}) the outputs of the block before, but the model "
                f"turns block {index - 1}'s outputs {outputs[index - 1]} into {seen[index][0]} before block {index}: "
                f"that code between blocks cannot be replayed")
    differing = [index for index in sorted(seen) if index and not _same_values(arguments[0], arguments[index])]
    if differing and shape_preserving:
        index = differing[0]
        raise GraphpressError(
            f"block {index} of {path} ({kind}) receives other extra arguments than block 0 (per-layer attention "
            f"masks, Swin's per-stage sizes, T5's position bias made by block 0): layers that are compared, "
            f"dropped or merged must be interchangeable")
    return bool(differing)


def _same_values(a: Any, b: Any) -> bool:
    """Whether two captured argument structures hold the same values (tensors by identity, else by value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        return a is b or (a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_values(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_values(a[k], b[k]) for k in a)
    if a is None or b is None or isinstance(a, (bool, int, float, str)):
        return a == b
    return type(a) is type(b)


@torch.no_grad()
def capture_block_calls(model: nn.Module, blocks: nn.ModuleList, batches: list[dict[str, Any]]
                        ) -> tuple[list[torch.Tensor], list[list[BlockCall]]]:
    """Hidden states entering block 0 per batch, and *each* block's own extra arguments per batch.

    For models whose blocks get different masks or biases (Gemma-2/3 alternate sliding-window and full
    attention masks; T5's later blocks get the position bias block 0 made): replaying them with block 0's
    arguments would calibrate on the wrong attention, silently.  This runs the whole forward pass per batch
    (not only up to block 0) and keeps references to what each block received; the arguments do not depend
    on the hidden states being edited, so they stay valid while earlier blocks change.
    """
    hidden_states: list[torch.Tensor] = []
    per_block: list[list[BlockCall]] = [[] for _ in blocks]

    def record(index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            kwargs = dict(kwargs)
            hidden, rest = (args[0], args[1:]) if args else (kwargs.pop("hidden_states"), ())
            if index == 0:
                hidden_states.append(hidden)
            per_block[index].append(BlockCall(rest, kwargs))
        return hook

    handles = [block.register_forward_pre_hook(record(i), with_kwargs=True) for i, block in enumerate(blocks)]
    extra = {"use_cache": False} if _accepts_use_cache(model) else {}
    device = next(model.parameters()).device
    try:
        for batch in batches:
            model(**to_device(batch, device), **extra)
    finally:
        for handle in handles:
            handle.remove()
    if any(len(calls) != len(batches) for calls in per_block):
        raise GraphpressError(f"not every block of {type(model).__name__} ran once per calibration batch")
    return hidden_states, per_block


@torch.no_grad()
def run_block(block: nn.Module, hidden: torch.Tensor, call: BlockCall) -> torch.Tensor:
    """Output hidden states of ``block`` on ``hidden`` with the captured extra arguments."""
    output = block(hidden, *call.args, **call.kwargs)
    # Older Hugging Face blocks return (hidden_states, attentions, ...); current ones a tensor.
    return output[0] if isinstance(output, (tuple, list)) else output
