"""``recover=``: a plan whose edited model no longer runs is repaired by freezing the groups that break it.

The model here reshapes a conv's output to a width read at run time from another tensor (the pattern of
SegFormer's sequence reduction, without transformers): the trace records the width as a constant, so the
coupling analysis lets the conv's output channels be pruned on their own and the user's forward breaks."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import graphpress
from graphpress.errors import PassError
from graphpress.passes.prune import plan_trials, recover


class _Reduction(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv1d(width, width, 1)

    def forward(self, hidden: torch.Tensor, width_source: torch.Tensor) -> torch.Tensor:
        batch = hidden.shape[0]
        out = self.conv(hidden.transpose(1, 2))
        return out.reshape(batch, width_source.shape[-1], -1).transpose(1, 2)  # width read at run time


class RuntimeWidth(nn.Module):
    def __init__(self, width: int = 32, hidden: int = 64):
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.reduction = _Reduction(width)
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor, width_source: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.down(torch.relu(self.up(self.reduction(h, width_source))))
        return self.head(h)


def _case() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = RuntimeWidth().eval()
    inputs = (torch.randn(2, 8, 8), torch.zeros(2, 32))
    return model, inputs


def _prune(pipeline: str):
    model, inputs = _case()
    pruned, report = graphpress.optimize(model, pipeline, example_inputs=inputs, return_report=True)
    return model, inputs, pruned, report.records[-1].stats


def test_groups_that_break_the_forward_are_frozen_and_named(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="graphpress"):
        model, inputs, pruned, stats = _prune("prune-channels{ratio=0.3}")
    assert len(stats["frozen"]) == 1
    assert "reduction.conv.weight[0]" in stats["frozen"][0]
    assert "frozen because pruning them broke reduction: RuntimeError" in stats["frozen"][0]
    assert "frozen because pruning them broke reduction" in caplog.text
    assert 0.27 <= stats["achieved_ratio"] <= 0.33  # the other groups carry the ratio
    assert pruned.reduction.conv.out_channels == 32 and pruned.up.out_features < 64
    assert 0 < stats["recover_trials"] <= recover.MAX_TRIALS
    with torch.no_grad():
        assert pruned(*inputs).shape == model(*inputs).shape


def test_recover_false_keeps_the_refusal() -> None:
    model, inputs = _case()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PassError, match=r"no longer runs: reduction \(_Reduction\) failed.*ignore=reduction\*"):
        graphpress.optimize(model, "prune-channels{ratio=0.3,recover=false}", example_inputs=inputs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the user's model untouched


def test_search_gives_up_with_the_located_error_after_its_trial_budget(monkeypatch) -> None:
    monkeypatch.setattr(plan_trials, "MAX_TRIALS", 1)  # the first trial (the whole plan) fails: no room to search
    with pytest.raises(PassError, match=r"reduction: RuntimeError.*within 1 trial runs.*ignore=reduction\*"):
        _prune("prune-channels{ratio=0.3}")


def test_a_working_plan_costs_one_trial_and_freezes_nothing() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    _, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=(torch.randn(2, 8),),
                                    return_report=True)
    stats = report.records[-1].stats
    assert stats["recover_trials"] == 1 and "frozen" not in stats


def test_no_trial_copy_when_the_weights_would_not_fit_twice(monkeypatch) -> None:
    # The trial copies every weight; without room for that copy the pass prunes as before recover= existed,
    # says so, and the manager's own output check remains the guard.
    monkeypatch.setattr(plan_trials, "_available_memory", lambda: 1024)
    model, inputs = _case()
    with pytest.raises(PassError, match="no longer runs"):
        graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=inputs)


def test_skip_reason_compares_the_copy_with_free_memory() -> None:
    class _Weights:
        def parameter_bytes(self) -> int:
            return 3 * 2**30

    assert recover.recover_skip_reason(_Weights(), available=8 * 2**30) is None
    assert "3.0 GiB" in recover.recover_skip_reason(_Weights(), available=5 * 2**30)


class _Block(nn.Module):
    """A residual block whose reduction reads its width at run time, as every block of MaxViT/PVT does."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.reduction = _Reduction(width)
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)

    def forward(self, h: torch.Tensor, width_source: torch.Tensor) -> torch.Tensor:
        return h + self.down(torch.relu(self.up(self.reduction(h, width_source))))


class RepeatedRuntimeWidth(nn.Module):
    def __init__(self, blocks: int = 8, width: int = 32, hidden: int = 64):
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.blocks = nn.ModuleList(_Block(width, hidden) for _ in range(blocks))
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor, width_source: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, width_source)
        return self.head(h)


def _repeated_case() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return RepeatedRuntimeWidth().eval(), (torch.randn(2, 8, 8), torch.zeros(2, 32))


def test_a_culprit_s_twins_in_repeated_blocks_are_frozen_with_it() -> None:
    # Eight blocks each break the same way. With the twins of the first culprit frozen together the search
    # takes one bisection, and every block's reduction stays whole.
    model, inputs = _repeated_case()
    pruned, report = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=inputs,
                                         return_report=True)
    stats = report.records[-1].stats
    assert stats["recover_trials"] <= 10
    assert len(stats["frozen"]) == 8
    assert sum("same block code as" in line for line in stats["frozen"]) == 7
    assert all(block.reduction.conv.out_channels == 32 for block in pruned.blocks)
    assert all(block.up.out_features < 64 for block in pruned.blocks)  # the MLPs still carry the ratio
    with torch.no_grad():
        assert pruned(*inputs).shape == model(*inputs).shape


def test_found_one_by_one_the_same_culprits_exhaust_the_budget(monkeypatch) -> None:
    # What the twins save: with every group its own pattern, eight culprits cost about 8 x (1 + log2 G) trials.
    monkeypatch.setattr(recover, "_block_pattern", lambda result, group: frozenset([str(group)]))
    monkeypatch.setattr(plan_trials, "MAX_TRIALS", 32)  # the twins finish within 32; one by one needs more
    model, inputs = _repeated_case()
    with pytest.raises(PassError, match=r"within 32 trial runs \(frozen so far: blocks\.\d"):
        graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=inputs)


def test_groups_at_the_same_place_in_one_block_are_not_twins() -> None:
    # conv1 and conv2 of one block differ in a name, not in a block index.
    pattern = recover._BLOCK_INDEX.sub
    assert pattern("#", "layer1.0.conv1") != pattern("#", "layer1.0.conv2")
    assert pattern("#", "stages.2.blocks.10.mlp.fc2") == pattern("#", "stages.0.blocks.3.mlp.fc2")


def test_twins_the_plan_did_not_prune_are_frozen_with_the_culprit() -> None:
    """torchvision's MaxViT: stage 0's two-head attention keeps both heads at ratio 0.3, so no trial ever ran
    it pruned; once the culprits elsewhere are frozen the next plan prunes it and breaks again. Its twins
    that the plan left whole are frozen with the culprit; twins the plan pruned stay with the bisection."""
    from types import SimpleNamespace

    import numpy as np

    keys = ["blocks.0.attn.qkv.weight", "blocks.1.attn.qkv.weight", "blocks.2.attn.qkv.weight",
            "blocks.0.mlp.up.weight", "blocks.3.attn.qkv.weight"]
    groups = [SimpleNamespace(named_members=[SimpleNamespace(key=k)], name=lambda k=k: k) for k in keys]
    result = SimpleNamespace(groups=groups)
    keep = {0: np.array([True, False]), 1: np.array([True, True]), 2: np.array([True, False]),
            3: np.array([True, False])}  # group 4 is not in the plan at all
    broke = recover.Breakage("blocks.0.attn", "RuntimeError: shape '[1, 49, 2, 32]' is invalid")
    frozen = [recover.FrozenGroup(0, keys[0], broke)]
    recover.freeze_unpruned_twins(result, [0, 1, 2, 3, 4], keep, frozen)
    assert [f.group for f in frozen] == [0, 1, 4]
    assert all("same block code as blocks.0.attn.qkv.weight" in f.breakage.error for f in frozen[1:])
