"""What a structured prune removed from each linear's input, kept for the recovery passes that follow it.

When a pruning pass has calibration statistics, it records, for every linear whose input channels it
removes, the weight as it was (rows already restricted to the outputs that survive), which input channels
stay, and the statistics of that input. ``compensate-bias`` turns a record into ``W[:, removed] @
mean(X_removed)`` added to the bias (FLAP); ``reconstruct`` refits the kept columns by least squares. The
records live in ``PassContext.extras[RECORDS_KEY]`` keyed by weight name, so a recovery pass anywhere later
in the pipeline finds them; a later prune of the same linear's outputs slices the records it left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...analysis.coupling import CouplingResult
from ...calibration import LinearInputStats
from .input_stats import linear_inputs

__all__ = ["RECORDS_KEY", "RECOVERY_PASSES", "RemovedInputs", "record_removed_inputs", "wants_recovery"]

RECORDS_KEY = "prune.removed_inputs"
# Passes that consume the records: a pruning pass collects statistics for them even when its own
# criterion needs none (importance=l2 followed by compensate-bias still gets compensated).
RECOVERY_PASSES = {"compensate-bias": False, "reconstruct": True}  # name -> needs the Gram matrix


@dataclass
class RemovedInputs:
    """One pruned linear: ``weight`` is the pre-pruning weight ``[kept outputs, all inputs]`` (float32),
    ``kept`` the input channels that stayed, ``stats`` the input statistics of the dense layer.
    ``bias_added`` is what ``compensate-bias`` already added to the bias (reconstruct accounts for it)."""

    module: str
    weight: torch.Tensor
    kept: np.ndarray
    stats: LinearInputStats
    bias_added: torch.Tensor | None = None

    @property
    def removed(self) -> np.ndarray:
        mask = np.ones(self.weight.shape[1], dtype=bool)
        mask[self.kept] = False
        return np.flatnonzero(mask)

    def compensation(self) -> torch.Tensor:
        """``W[:, removed] @ mean(X_removed)``: the removed channels' mean contribution to every output."""
        removed = torch.as_tensor(self.removed)
        mean = self.stats.mean[removed].to(torch.float64)
        return self.weight[:, removed].double() @ mean


def wants_recovery(ctx: Any) -> tuple[bool, bool]:
    """(a recovery pass follows in this pipeline, one of them needs Gram matrices)."""
    names = set(getattr(ctx, "extras", {}).get("pipeline_passes", ()))
    wanted = [gram for name, gram in RECOVERY_PASSES.items() if name in names]
    return bool(wanted), any(wanted)


def _output_keep(result: CouplingResult, keep: dict[int, np.ndarray], key: str, rows: int) -> np.ndarray:
    """Which rows (outputs) of weight ``key`` survive the plan."""
    mask = np.ones(rows, dtype=bool)
    for gi, group_keep in keep.items():
        for member in result.groups[gi].members:
            if member.key == key and member.axis == 0:
                mask &= group_keep[member.unit_of]
    return mask


def record_removed_inputs(result: CouplingResult, keep: dict[int, np.ndarray],
                          statistics: dict[str, LinearInputStats], extras: dict[str, Any]) -> int:
    """Record (before the weights are sliced) the inputs ``keep`` removes from every linear with statistics;
    returns how many linears got a record. Existing records of linears whose outputs shrink are sliced."""
    records: dict[str, RemovedInputs] = extras.setdefault(RECORDS_KEY, {})
    input_keep: dict[str, tuple[np.ndarray, Any]] = {}
    for gi, group_keep in keep.items():
        for item in linear_inputs(result.groups[gi], statistics):
            mask, _ = input_keep.get(item.member.key, (np.ones(item.weight.shape[1], dtype=bool), None))
            input_keep[item.member.key] = (mask & group_keep[item.member.unit_of], item)
    for key, record in list(records.items()):
        rows = _output_keep(result, keep, key, record.weight.shape[0])
        if not rows.all():
            record.weight = record.weight[torch.as_tensor(rows)]
            if record.bias_added is not None:
                record.bias_added = record.bias_added[torch.as_tensor(rows)]
    added = 0
    for key, (mask, item) in input_keep.items():
        if mask.all():
            continue
        if key in records:
            # Pruned again: recovery keeps working from the first record's dense weight and statistics;
            # this pruning removes some of the channels the first one kept.
            previous = records[key]
            if previous.kept.size == mask.size:
                previous.kept = previous.kept[mask]
            else:
                del records[key]  # the layer changed under us in a way we can't follow: no recovery for it
            continue
        rows = _output_keep(result, keep, key, item.weight.shape[0])
        weight = item.weight.detach().float()[torch.as_tensor(rows)].clone()
        records[key] = RemovedInputs(item.module, weight, np.flatnonzero(mask), item.stats)
        added += 1
    return added
