"""Per-input-channel scaling that leaves a block's function unchanged: find where it applies, and fold it.

AWQ and SmoothQuant both multiply the input columns of some linears by ``s`` and divide the producer of
those inputs by ``s``: an RMSNorm/LayerNorm weight (and bias) or the output rows of a preceding linear.
That is exact only where nothing else reads the producer's output, so the pairs come from a small table of
known block layouts (Llama-family decoders, BERT encoders) and are checked against the real shapes: a pair
whose sizes disagree (e.g. ``v_proj -> o_proj`` under grouped-query attention) is skipped.

Names alone do not prove a fold exact: Phi's ``input_layernorm`` also feeds the parallel MLP, OLMo-2 and
Gemma-2 apply ``post_attention_layernorm`` to the attention output (not to the MLP's input), Gemma's norms
scale by ``1 + weight``, OLMo's LayerNorm has no weight at all. So :func:`exact_pairs` folds random scales
into a copy of the block and keeps only the pairs that leave its outputs unchanged on calibration inputs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["ScalingPair", "scaling_pairs", "exact_pairs", "fold_scales"]

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


def _has_weight(module: nn.Module) -> bool:
    # A norm without an affine weight (OLMo's LayerNorm, elementwise_affine=False) has nothing to fold into.
    return isinstance(getattr(module, "weight", None), torch.Tensor)


def scaling_pairs(block: nn.Module) -> list[ScalingPair]:
    """The foldable (producer, consumers) pairs of ``block`` whose shapes agree."""
    modules = dict(block.named_modules())
    pairs = []
    for producer, consumers in _LAYOUTS:
        if producer not in modules or not all(c in modules for c in consumers):
            continue
        if not _has_weight(modules[producer]):
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


@torch.no_grad()
def exact_pairs(block: nn.Module, pairs: Sequence[ScalingPair], run: Callable[[nn.Module], list[torch.Tensor]],
                tolerance: float = 1e-3) -> list[ScalingPair]:
    """The ``pairs`` whose fold really leaves ``block`` unchanged: each is folded with random scales into a copy
    of the block, and kept only if ``run(copy)`` (the block's outputs on calibration inputs) stays within
    ``tolerance`` (relative max error) of ``run(block)``. Catches producers read by more than the listed
    consumers, norms that sit elsewhere than their name says, and norms whose weight is not a plain factor.
    """
    if not pairs:
        return []
    reference = run(block)
    generator = torch.Generator().manual_seed(0)
    kept = []
    for pair in pairs:
        width = _width(dict(block.named_modules())[pair.producer])
        scales = torch.empty(width).uniform_(0.5, 2.0, generator=generator)  # far from 1: a wrong fold shows
        trial = copy.deepcopy(block)
        fold_scales(trial, pair, scales)
        if all(_close(got, want, tolerance) for got, want in zip(run(trial), reference)):
            kept.append(pair)
    return kept


def _close(got: torch.Tensor, want: torch.Tensor, tolerance: float) -> bool:
    got, want = got.float(), want.float()
    scale = want.abs().max().clamp_min(1e-12)
    return bool(torch.isfinite(got).all()) and float((got - want).abs().max() / scale) <= tolerance
