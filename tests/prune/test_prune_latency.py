"""``prune-channels{cost=latency}`` and ``flops=``: the onnxruntime cost model charges a group that feeds a
slow node more per channel, the FLOPs target is met, and bad option values or a missing onnxruntime are
refused with a clear message."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import graphpress
from graphpress.analysis.coupling import analyze_coupling
from graphpress.errors import OptionError, PassError
from graphpress.frontends.torch_export import trace
from graphpress.passes.prune.latency import unit_latency_costs

pytest.importorskip("onnxruntime")


class TwoBranches(nn.Module):
    """Two branches of equal width: branch ``b`` feeds a 9x9 convolution, branch ``a`` a 1x1 one."""

    def __init__(self) -> None:
        super().__init__()
        self.a1, self.a2 = nn.Conv2d(3, 32, 1), nn.Conv2d(32, 8, 1)
        self.b1, self.b2 = nn.Conv2d(3, 32, 1), nn.Conv2d(32, 8, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a2(torch.relu(self.a1(x))) + self.b2(torch.relu(self.b1(x)))


def _inputs() -> tuple[torch.Tensor]:
    return (torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)),)


def test_group_feeding_a_slow_node_costs_more_per_channel():
    torch.manual_seed(0)
    graph = trace(TwoBranches().eval(), _inputs())
    result = analyze_coupling(graph)
    groups = [g.index for g in result.groups if g.prunable]
    costs, summary = unit_latency_costs(graph, result, groups, _inputs(), runs=3, threads=1)
    by_branch = {}
    for gi in groups:
        keys = {m.key.split(".")[0] for m in result.groups[gi].members}
        if keys <= {"a1", "a2"} or keys <= {"b1", "b2"}:
            by_branch[next(iter(keys))[0]] = costs[gi].mean()
    assert set(by_branch) == {"a", "b"}
    assert by_branch["b"] > 3 * by_branch["a"]  # 81x the multiply-adds per channel in b2
    assert summary["unattributed_ms"] < 0.5 * summary["profiled_ms"]


def test_cost_latency_meets_the_flops_target():
    torch.manual_seed(0)
    model = TwoBranches().eval()
    pruned, report = graphpress.optimize(model, "prune-channels{flops=0.4,cost=latency,profile_runs=2}",
                                         example_inputs=_inputs(), return_report=True)
    record = report.records[-1]
    assert record.stats["cost"] == "latency" and abs(record.stats["achieved_flops"] - 0.4) < 0.08
    assert abs(record.flops_after / record.flops_before - 0.6) < 0.08
    assert pruned(*_inputs()).shape == model(*_inputs()).shape
    # the slow branch pays: b1 loses more channels than a1
    assert pruned.b1.out_channels < pruned.a1.out_channels


@pytest.mark.parametrize("options, message", [
    ("cost=speed", "option 'cost'.*params, latency"),
    ("flops=1.5", "option 'flops'.*out of range"),
    ("profile_runs=0", "option 'profile_runs'.*out of range"),
    ("max_ratio=2", "option 'max_ratio'.*out of range"),
])
def test_bad_option_values_are_refused(options, message):
    with pytest.raises(OptionError, match=message):
        graphpress.optimize(TwoBranches().eval(), f"prune-channels{{{options}}}", example_inputs=_inputs())


def test_missing_onnxruntime_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(PassError, match="onnxruntime, which is not installed"):
        graphpress.optimize(TwoBranches().eval(), "prune-channels{ratio=0.3,cost=latency}",
                            example_inputs=_inputs())
