"""Hidden states at the boundaries between decoder layers, on calibration data, and their similarity.

All three depth decisions (which layer to drop, which adjacent pair to merge, which LaCo collapse keeps
the output) are read from the residual stream ``x_0 .. x_L`` (``x_i`` enters layer ``i``). The inputs of
layer 0 are captured once with graphpress's calibration runner (embeddings, masks and rotary tables
included); any layer can then be replayed on any hidden states.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ...calibration import BlockCall, calibration_batches, capture_block_inputs, run_block
from ...calibration.blocks import check_replayable
from ...errors import PassError
from ..context import PassContext
from .hf_layers import decoder_layers

__all__ = ["LayerInputs", "calibration_inputs", "capture_layer_inputs", "run_layer", "boundary_states",
           "mean_token_cosine"]

Hidden = list[torch.Tensor]  # one tensor [batch, seq, hidden] per calibration batch


def calibration_inputs(ctx: PassContext, samples: int, batch_size: int = 2) -> list[dict[str, Any]]:
    """The first ``samples`` sequences of the user's calibration data, as model-input batches."""
    if ctx.calibration is None:
        raise PassError("depth passes need calibration data: pass calibration=token windows, "
                        "a list of strings (with tokenizer=...), or an iterable of input dicts")
    data = ctx.calibration
    if isinstance(data, torch.Tensor):
        data = data[:samples] if data.dim() == 2 else data
        return calibration_batches(data, batch_size=batch_size)
    batches = calibration_batches(data, tokenizer=ctx.tokenizer, batch_size=batch_size)
    return batches[:samples]


class LayerInputs:
    """Hidden states entering layer 0 and the extra arguments every layer receives, per batch."""

    def __init__(self, hidden: Hidden, calls: list[BlockCall]):
        self.hidden = hidden
        self.calls = calls


@torch.no_grad()
def capture_layer_inputs(model: nn.Module, batches: list[dict[str, Any]]) -> LayerInputs:
    """Run the model up to its first decoder layer on ``batches`` and keep what that layer receives."""
    path, layers = decoder_layers(model)
    was_training = model.training
    model.eval()
    try:
        check_replayable(model, path, layers, batches[0], shape_preserving=True)  # stage lists (Swin, ConvNeXt) cannot be replayed
        hidden, calls = capture_block_inputs(model, layers[0], batches)
    finally:
        model.train(was_training)
    return LayerInputs(hidden, calls)


def run_layer(layer: nn.Module, hidden: Hidden, calls: Sequence[BlockCall]) -> Hidden:
    """Outputs of ``layer`` on each batch of ``hidden`` (gradients flow if enabled by the caller)."""
    # The calibration runner's run_block is no_grad by design; distillation needs the graph, so it
    # gets a direct call when the caller has enabled gradients.
    if torch.is_grad_enabled():
        return [_run_with_grad(layer, h, call) for h, call in zip(hidden, calls)]
    return [run_block(layer, h, call) for h, call in zip(hidden, calls)]


def _run_with_grad(layer: nn.Module, hidden: torch.Tensor, call: BlockCall) -> torch.Tensor:
    output = layer(hidden, *call.args, **call.kwargs)
    return output[0] if isinstance(output, (tuple, list)) else output


@torch.no_grad()
def boundary_states(layers: Sequence[nn.Module], inputs: LayerInputs, start: int = 0,
                    first: Hidden | None = None) -> list[Hidden]:
    """``[x_start, ..., x_L]``: the residual stream before each layer from ``start`` and after the last."""
    states = [inputs.hidden if first is None else first]
    for layer in layers[start:]:
        states.append(run_layer(layer, states[-1], inputs.calls))
    return states


def mean_token_cosine(a: Hidden, b: Hidden) -> float:
    """Mean over every token of the cosine between the hidden vectors of ``a`` and ``b``."""
    total, count = 0.0, 0
    for x, y in zip(a, b):
        cosine = torch.nn.functional.cosine_similarity(x.double().flatten(0, -2), y.double().flatten(0, -2), dim=-1)
        total += cosine.sum().item()
        count += cosine.numel()
    return total / max(count, 1)
