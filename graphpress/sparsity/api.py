"""``sparsify_model``: prune the linears of a torch model to a sparsity pattern, in place.

Magnitude works linear by linear without data. Wanda and SparseGPT walk the model block by block through
:func:`graphpress.calibration.run_blockwise`, so each block is pruned on the activations produced by the
already-pruned blocks before it (SparseGPT also gets the Gram matrices it needs). Layer-adaptive
allocations compute one ratio per linear first, then prune with the chosen method at those ratios: OWL
from the outlier fractions of each decoder block's Wanda scores on the dense model (one ratio per block),
LAMP from the weights' magnitudes alone (one ratio per linear). Both redistribute the ratio only among the
linears the method will prune (for Wanda and SparseGPT those inside the calibrated blocks), so the overall
ratio over the pruned linears is the requested one.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ..errors import GraphpressError, OptionError
from .allocation import lamp_ratios, outlier_fraction, owl_block_ratios, whole_weight_ratios
from .magnitude import magnitude_prune
from .masks import SparsityPattern, sparsity_of
from .sparsegpt import sparsegpt_prune
from .wanda import wanda_prune, wanda_scores

__all__ = ["SparsityReport", "sparsify_model", "METHODS", "ALLOCATIONS"]

METHODS = ("magnitude", "wanda", "sparsegpt")
ALLOCATIONS = ("uniform", "owl", "lamp")


@dataclass
class SparsityReport:
    """What was pruned: realised ratio per linear, the overall ratio over them, skipped layers, wall time."""

    pattern: str
    method: str
    allocation: str
    layer_ratios: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    parameters: int = 0
    zeros: int = 0
    seconds: float = 0.0

    @property
    def overall_ratio(self) -> float:
        return self.zeros / max(self.parameters, 1)


def _select_linears(model: nn.Module, ignore: Sequence[str], pattern: SparsityPattern,
                    report: SparsityReport) -> dict[str, nn.Linear]:
    """Linears to prune: not ignored, not sharing their weight with an embedding (a tied lm_head: pruning it
    would prune the token embeddings too), and wide enough for an N:M pattern (others are reported as skipped)."""
    embeddings = {id(m.weight): n for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    selected = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in ignore):
            continue
        if id(module.weight) in embeddings:
            report.skipped[name] = f"weight tied to the embedding {embeddings[id(module.weight)]}"
            continue
        if pattern.is_n_of_m and module.in_features % pattern.n_of_m[1]:
            report.skipped[name] = f"in_features {module.in_features} is not a multiple of {pattern.n_of_m[1]}"
            continue
        selected[name] = module
    return selected


def _input_norms(model: nn.Module, calibration: Any, tokenizer: Any) -> dict[str, torch.Tensor]:
    """``||X_j||_2`` per input channel of every block linear, on the dense model."""
    from ..calibration import run_blockwise

    stats = run_blockwise(model, calibration, tokenizer=tokenizer)
    return {name: s.l2_norm for name, s in stats.items()}


def _block_members(model: nn.Module, linears: dict[str, nn.Linear]) -> dict[str, list[str]]:
    """``{block name: [linear names]}`` for the selected linears inside the repeated blocks that
    :func:`graphpress.calibration.run_blockwise` walks (``model.layers.3`` -> its q/k/v/o/gate/up/down)."""
    from ..calibration.blocks import find_blocks
    from ..calibration.statistics import linear_modules

    try:
        prefix, blocks = find_blocks(model)
    except GraphpressError:  # no repeated blocks: nothing is calibrated (magnitude may still prune)
        return {}
    members: dict[str, list[str]] = {}
    for index, block in enumerate(blocks):
        name = f"{prefix}.{index}"
        inside = [n for n in linear_modules(block, name) if n in linears]
        if inside:
            members[name] = inside
    return members


def _allocate(model: nn.Module, linears: dict[str, nn.Linear], pattern: SparsityPattern, method: str,
              allocation: str, calibration: Any, tokenizer: Any,
              owl: tuple[float, float] = (0.08, 5.0)) -> dict[str, float]:
    """Per-linear ratios of a layer-adaptive allocation.

    The ratio is redistributed among the linears ``method`` will prune: all selected ones for magnitude,
    those inside the calibrated blocks for Wanda and SparseGPT (the others are not pruned and keep the
    nominal ratio, which nothing uses). LAMP ranks by ``|W|`` whatever the method, as in the paper: only its
    per-layer ratios are used, the method picks the weights within each layer. OWL counts outliers of Wanda
    scores of the dense model whatever the method, as in the paper (outliers are an activation property), one
    ratio per decoder block.
    """
    ratios = {name: pattern.ratio for name in linears}
    members = _block_members(model, linears)
    in_blocks = [name for names in members.values() for name in names]
    if allocation == "lamp":
        pruned = list(linears) if method == "magnitude" else in_blocks
        ratios.update(lamp_ratios({name: linears[name].weight.detach().abs() for name in pruned}, pattern.ratio))
        return ratios
    if calibration is None:
        raise OptionError("sparsify{allocation=owl} needs calibration data (it counts outliers of Wanda scores)")
    norms = _input_norms(model, calibration, tokenizer)
    spread, threshold = owl
    outliers = {block: outlier_fraction([wanda_scores(linears[n].weight.detach(), norms[n]) for n in names],
                                        threshold)
                for block, names in members.items()}
    sizes = {block: sum(linears[n].weight.numel() for n in names) for block, names in members.items()}
    # Linears outside the blocks (pruned by magnitude only) keep the nominal ratio, so centring the block
    # ratios on it keeps the overall ratio.
    block_ratios = owl_block_ratios(outliers, sizes, pattern.ratio, spread)
    for block, names in members.items():
        for name in names:
            ratios[name] = block_ratios[block]
    return ratios


def _prune_linear(linear: nn.Linear, pattern: SparsityPattern, method: str, stats: Any) -> None:
    weight = linear.weight.data
    if method == "magnitude":
        pruned = magnitude_prune(weight, pattern)
    elif method == "wanda":
        pruned = wanda_prune(weight, stats.l2_norm, pattern)
    else:
        pruned = sparsegpt_prune(weight, stats.hessian(), pattern)
    weight.copy_(pruned)


@torch.no_grad()
def sparsify_model(
    model: nn.Module,
    pattern: SparsityPattern,
    *,
    method: str = "wanda",
    allocation: str = "uniform",
    ignore: Sequence[str] = ("lm_head",),
    calibration: Optional[Any] = None,
    tokenizer: Optional[Any] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    owl_lambda: float = 0.08,
    owl_threshold: float = 5.0,
) -> SparsityReport:
    """Prune ``model``'s linears to ``pattern`` in place with ``method`` and ``allocation``; return a report.

    Wanda and SparseGPT prune the linears inside the repeated blocks (those the calibration walk reaches);
    magnitude prunes every selected linear. ``ignore`` holds module-name globs left dense. ``owl_lambda``
    (the largest shift of a block's ratio from the mean) and ``owl_threshold`` (an outlier is a score above
    this multiple of its block's mean) are OWL's two hyperparameters; the defaults are the paper's LLaMA ones.
    """
    if method not in METHODS:
        raise OptionError(f"sparsify: method must be one of {', '.join(METHODS)}; got {method!r}")
    if allocation not in ALLOCATIONS:
        raise OptionError(f"sparsify: allocation must be one of {', '.join(ALLOCATIONS)}; got {allocation!r}")
    if allocation != "uniform" and pattern.is_n_of_m:
        raise OptionError(f"sparsify: allocation={allocation} redistributes an unstructured ratio; "
                          f"an N:M pattern fixes the ratio of every layer (use allocation=uniform)")
    needs_data = method != "magnitude" or allocation == "owl"
    if needs_data and calibration is None:
        raise OptionError(f"sparsify{{method={method},allocation={allocation}}} needs calibration data")
    started = time.perf_counter()
    report = SparsityReport(str(pattern), method, allocation)
    linears = _select_linears(model, ignore, pattern, report)
    ratios = {name: pattern.ratio for name in linears}
    if allocation != "uniform":
        ratios = _allocate(model, linears, pattern, method, allocation, calibration, tokenizer,
                           (owl_lambda, owl_threshold))
    ratios = whole_weight_ratios(ratios, {name: linear.weight.numel() for name, linear in linears.items()})

    def pattern_for(name: str) -> SparsityPattern:
        return pattern if pattern.is_n_of_m else pattern.with_ratio(ratios[name])

    pruned: set[str] = set(linears) if method == "magnitude" else set()
    if method == "magnitude":
        for index, (name, linear) in enumerate(linears.items()):
            _prune_linear(linear, pattern_for(name), method, None)
            if progress is not None:
                progress(index + 1, len(linears))
    else:
        from ..calibration import BlockContext, run_blockwise

        def prune_block(context: BlockContext) -> None:
            for name, stats in context.stats.items():
                if name in linears:
                    _prune_linear(linears[name], pattern_for(name), method, stats)
                    pruned.add(name)

        run_blockwise(model, calibration, tokenizer=tokenizer, callback=prune_block,
                      with_gram=method == "sparsegpt", keep_stats=False, progress=progress)
    for name, linear in linears.items():
        if name not in pruned:
            report.skipped[name] = "outside the calibrated blocks"
            continue
        report.layer_ratios[name] = sparsity_of(linear.weight)
        report.parameters += linear.weight.numel()
        report.zeros += int((linear.weight == 0).sum())
    report.seconds = time.perf_counter() - started
    return report
