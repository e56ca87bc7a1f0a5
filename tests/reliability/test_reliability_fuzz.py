"""Property-based fuzzing: generated networks x generated pipelines through optimize and onnxruntime.

50 derandomized cases keep CI stable; benchmarks/fuzz_long.py runs the same property on >= 1000 cases.
Failures the fuzzer found are kept below as explicit regression tests.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from torch import nn

from graphpress import optimize
from graphpress.errors import PassError
from graphpress.testing.fuzz import NetSpec, build_network, net_specs, pipelines
from graphpress.testing.fuzz_check import check_case


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logging.disable(logging.NOTSET)


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(net_specs(max_blocks=2), pipelines())
# Found by the fuzzer: a width split whose halves are pruned must keep the halves equal (chunk coupling).
@example(NetSpec("sequence", 24, (("split",),), 854), "fold-bn,prune-channels{ratio=0.6,importance=random,"
         "scope=local,round_to=1},dce")
@example(NetSpec("sequence", 16, (("attention", 4, 2, 4, True),), 1),
         "prune-heads{ratio=0.4,importance=l2,scope=local,round_to=1},dce")
@example(NetSpec("image", 8, (("grouped", 4), ("residual", 2)), 3), "fold-bn,quantize{bits=4,group=16,"
         "method=rtn,ignore=none},fold-constants,dce")
def test_fuzz_generated_networks_survive_generated_pipelines(spec, pipeline):
    check_case(build_network(spec), pipeline)


class HardCodedSplit(nn.Module):
    """A split size kept in a Python attribute: pruning cannot edit it, so the forward would break."""

    def __init__(self):
        super().__init__()
        self.half = 12
        self.embed = nn.Linear(12, 24)
        self.first = nn.Linear(12, 12)
        self.second = nn.Linear(12, 12)

    def forward(self, x):
        a, b = self.embed(x).split([self.half, self.half], dim=-1)
        return torch.cat([self.first(a), self.second(b)], dim=-1)


def test_fuzz_regression_hard_coded_split_is_rolled_back_not_silently_broken():
    # Found by the fuzzer (spec sequence/width 24/split, seed 854, with `split([self.half, ...])`): the
    # pruned module's forward still splits at 12. The numeric check must refuse it and name the pass.
    model = HardCodedSplit().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PassError, match="prune-channels") as info:
        optimize(model, "prune-channels{ratio=0.5,round_to=1}", example_inputs=(torch.randn(2, 12),))
    assert "rolled back" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
