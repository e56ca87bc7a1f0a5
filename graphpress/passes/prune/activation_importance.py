"""Activation-aware importance criteria: Wanda-sp, FLAP (fluctuation) and CoMe channel sensitivity.

Each scores one input channel ``j`` of a linear ``W`` (``[out, in]``) from ``W[:, j]`` and calibration
statistics of ``X_j`` (the channel's input over all calibration tokens), then adds the positions of a unit
over every consumer linear of the group's pruned axis (an MLP channel: one column of ``down_proj``; an
attention unit: its head_dim columns of ``o_proj``; the hidden size: columns of every q/k/v/gate/up).

* ``wanda`` (Wanda-sp):  S_j = sum_i |W_ij| * ||X_j||_2
* ``flap`` (fluctuation): S_j = Var_tokens(X_j) * ||W[:, j]||_2^2 (sample variance): a channel that barely
  moves is well replaced by its mean, which is what ``compensate-bias`` puts back.
* ``come`` (CoMe channel sensitivity): S_j = mean_tokens|X_j| * ||W[:, j]||_2, activation intensity times
  the weight norm of the channel. The CoMe paper was not available offline; this is our reading of
  "activation intensity times weight norms" (DESIGN.md section 4): it differs from Wanda-sp in using the
  mean magnitude of the activation and the L2 (not L1) norm of the weights.

All three register ``standardize="group"``: under ``scope=global`` each group's scores are z-scored on their
own before heads and channels are ranked in one budget. FLAP itself z-scores each kind across all layers
(``standardize=kind``); on SmolLM2-135M that strips the early layers' MLPs (whose inputs fluctuate little)
to a tenth of their width and measured about twice the perplexity of per-group z-scores at 20%
(benchmarks/results/prune_smollm2.md), so per-group is the default and ``kind`` stays an option.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ...analysis.coupling import CouplingGroup
from ...calibration import LinearInputStats
from .importance import ImportanceContext, register_importance, sum_over_members
from .input_stats import linear_inputs

__all__ = ["wanda", "flap", "come", "channel_scores"]

ChannelScore = Callable[[torch.Tensor, LinearInputStats], torch.Tensor]


def channel_scores(ctx: ImportanceContext, group: CouplingGroup, per_channel: ChannelScore) -> np.ndarray:
    """Per-unit sums of ``per_channel(W, stats)`` (one value per input channel) over the group's consumers."""
    consumers = {id(item.member): item for item in linear_inputs(group, ctx.statistics)}

    def member_scores(member):
        item = consumers.get(id(member))
        if item is None:
            return None
        return per_channel(item.weight.detach().double(), item.stats).cpu().numpy()

    return sum_over_members(group, member_scores)


def _sample_variance(stats: LinearInputStats) -> torch.Tensor:
    n = stats.tokens
    return stats.variance * (n / (n - 1) if n > 1 else 1.0)


@register_importance("wanda", needs_statistics=True, standardize="group")
def wanda(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
    """Wanda-sp: sum_i |W_ij| * ||X_j||_2."""
    return channel_scores(ctx, group, lambda w, s: w.abs().sum(0) * s.l2_norm)


@register_importance("flap", needs_statistics=True, standardize="group")
def flap(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
    """FLAP fluctuation: Var(X_j) * ||W[:, j]||_2^2."""
    return channel_scores(ctx, group, lambda w, s: w.square().sum(0) * _sample_variance(s))


@register_importance("come", needs_statistics=True, standardize="group")
def come(ctx: ImportanceContext, group: CouplingGroup) -> np.ndarray:
    """CoMe channel sensitivity: mean|X_j| * ||W[:, j]||_2."""
    return channel_scores(ctx, group, lambda w, s: w.square().sum(0).sqrt() * s.mean_abs)
