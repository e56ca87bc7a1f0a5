"""Calibration input statistics for pruning: gathered once, block by block, and matched to group members.

Activation-aware criteria (Wanda-sp, FLAP, CoMe) and the recovery passes (bias compensation, least-squares
reconstruction) read per-channel moments of the input of every linear layer a group's pruned axis feeds.
They come from :func:`graphpress.calibration.run_blockwise`, which replays one decoder/encoder block at a
time, so peak memory is one block's activations rather than a full forward that keeps every layer's.
The statistics are those of the model as it is before the pass prunes anything (FLAP's one-shot setting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ...analysis.coupling import CouplingGroup
from ...analysis.coupling.groups import GroupMember
from ...calibration import LinearInputStats, run_blockwise
from ...errors import GraphpressError, PassError
from ...ir import Graph

__all__ = ["collect_input_statistics", "LinearInput", "linear_inputs"]


def collect_input_statistics(graph: Graph, calibration: Any, tokenizer: Any = None, *, with_gram: bool = False,
                             why: str = "this criterion") -> dict[str, LinearInputStats]:
    """``{linear module name: input statistics}`` of the graph's torch module over ``calibration``.

    ``with_gram`` also accumulates ``X^T X`` per linear (least-squares reconstruction needs it)."""
    module = graph.module
    if graph.origin != "torch" or module is None:
        raise PassError(f"{why} runs calibration data through a torch model; on an ONNX model use "
                        "importance=l1|l2 (or prune the torch model, then export)")
    if calibration is None:
        raise PassError(f"{why} needs calibration data: pass calibration=... (token windows [n, seqlen], "
                        "strings with a tokenizer, or input dicts)")
    try:
        return run_blockwise(module, calibration, tokenizer=tokenizer, with_gram=with_gram, keep_stats=True)
    except GraphpressError as error:
        raise PassError(f"{why}: could not collect calibration statistics block by block: {error}") from error


@dataclass
class LinearInput:
    """One member of a group that is the input axis of a linear layer with calibration statistics."""

    member: GroupMember
    module: str
    weight: torch.Tensor  # [out_features, in_features], the positions of the member are its columns
    stats: LinearInputStats


def linear_inputs(group: CouplingGroup, statistics: dict[str, LinearInputStats]) -> Iterator[LinearInput]:
    """Members of ``group`` that are the input channels (axis 1) of a linear whose statistics were
    collected; other members (the producers' rows, norms, linears outside the blocks) are skipped."""
    for member in group.members:
        if member.axis != 1 or not member.key.endswith(".weight"):
            continue
        name = member.key[: -len(".weight")]
        stats = statistics.get(name)
        if stats is None:
            continue
        param = member.values[0].param
        if param.is_meta or param.data.dim() != 2 or param.data.shape[1] != stats.in_features:
            continue
        yield LinearInput(member, name, param.data, stats)
