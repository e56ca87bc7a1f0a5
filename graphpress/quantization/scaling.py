"""Per-input-channel scaling that leaves a block's function unchanged: find where it applies, and fold it.

AWQ and SmoothQuant both multiply the input columns of some linears by ``s`` and divide the producer of
those inputs by ``s``: an RMSNorm/LayerNorm weight (and bias) or the output rows of a preceding linear.
That is exact only where nothing else reads the producer's output, so the pairs come from a small table of
known block layouts (Llama-family decoders, BERT encoders) and are checked against the real shapes: a pair
whose sizes disagree (e.g. ``v_proj -> o_proj`` under grouped-query attention) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ScalingPair", "scaling_pairs", "fold_scales"]

# (producer, consumers) relative to a block; the first entry whose modules all exist is used.
_LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("self_attn.v_proj", ("self_attn.o_proj",)),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    ("mlp.up_proj", ("mlp.down_proj",)),
    ("attention.self.value", ("attention.output.dense",)),
)


@dataclass
class ScalingPair:
    """A producer whose outputs feed exactly the ``consumers`` (names relative to the block)."""

    producer: str
    consumers: tuple[str, ...]


def _width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.weight.numel()


def scaling_pairs(block: nn.Module) -> list[ScalingPair]:
    """The foldable (producer, consumers) pairs of ``block`` whose shapes agree."""
    modules = dict(block.named_modules())
    pairs = []
    for producer, consumers in _LAYOUTS:
        if producer not in modules or not all(c in modules for c in consumers):
            continue
        width = _width(modules[producer])
        if all(isinstance(modules[c], nn.Linear) and modules[c].in_features == width for c in consumers):
            pairs.append(ScalingPair(producer, consumers))
    return pairs


@torch.no_grad()
def fold_scales(block: nn.Module, pair: ScalingPair, scales: torch.Tensor) -> None:
    """Multiply the consumers' input columns by ``scales`` and divide the producer's output by them."""
    modules = dict(block.named_modules())
    producer = modules[pair.producer]
    s = scales.to(device=producer.weight.device, dtype=producer.weight.dtype)
    if isinstance(producer, nn.Linear):
        producer.weight.div_(s.unsqueeze(1))
    else:
        producer.weight.div_(s)
    if getattr(producer, "bias", None) is not None:
        producer.bias.div_(s)
    for name in pair.consumers:
        modules[name].weight.mul_(s.unsqueeze(0))
