"""OWL and LAMP redistribute ratios across layers but keep the requested overall ratio (within 0.5%)."""

import copy

import pytest
import torch

from graphpress.errors import OptionError
from graphpress.sparsity import lamp_ratios, owl_block_ratios, parse_pattern, sparsify_model, sparsity_of


def test_owl_prunes_outlier_heavy_blocks_less_and_keeps_the_weighted_mean():
    outliers = {"b0": 0.02, "b1": 0.001, "b2": 0.01}
    sizes = {"b0": 100, "b1": 300, "b2": 200}
    ratios = owl_block_ratios(outliers, sizes, 0.6, spread=0.08)
    assert ratios["b0"] < ratios["b2"] < ratios["b1"]
    assert max(ratios.values()) - min(ratios.values()) == pytest.approx(0.16)
    assert sum(ratios[b] * sizes[b] for b in sizes) / sum(sizes.values()) == pytest.approx(0.6)


def test_lamp_gives_the_global_ratio_and_spares_the_layer_of_large_weights():
    torch.manual_seed(0)
    importances = {"small": torch.rand(64, 64), "heavy_tailed": torch.randn(64, 256).abs() ** 3}
    ratios = lamp_ratios(importances, 0.5)
    total = sum(t.numel() for t in importances.values())
    overall = sum(ratios[n] * t.numel() for n, t in importances.items()) / total
    assert overall == pytest.approx(0.5, abs=1e-3)
    assert ratios["small"] != pytest.approx(ratios["heavy_tailed"], abs=0.02)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("allocation", ["owl", "lamp"])
def test_adaptive_allocation_matches_the_overall_ratio(method, allocation, make_llama, calibration_tokens):
    model = make_llama(hidden=128, intermediate=256)
    report = sparsify_model(model, parse_pattern(0.6, None), method=method, allocation=allocation,
                            calibration=calibration_tokens)
    assert len(report.layer_ratios) == 14 and not report.skipped
    assert abs(report.overall_ratio - 0.6) <= 0.005
    assert len({round(r, 3) for r in report.layer_ratios.values()}) > 1  # actually adaptive
    assert sparsity_of(model.lm_head.weight) == 0.0


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("ratio,text", [(0.5, None), (None, "2:4"), (None, "4:8")])
def test_uniform_sparsify_model_hits_the_ratio_in_every_layer(method, ratio, text, tiny_llama, calibration_tokens):
    pattern = parse_pattern(ratio, text)
    report = sparsify_model(tiny_llama, pattern, method=method, calibration=calibration_tokens)
    assert abs(report.overall_ratio - pattern.ratio) <= 0.005
    assert all(abs(r - pattern.ratio) <= 0.005 for r in report.layer_ratios.values())


def test_nm_pattern_refuses_adaptive_allocation(tiny_llama, calibration_tokens):
    with pytest.raises(OptionError, match="allocation"):
        sparsify_model(tiny_llama, parse_pattern(None, "2:4"), allocation="owl", calibration=calibration_tokens)


def test_calibrated_methods_refuse_to_run_without_data(tiny_llama):
    with pytest.raises(OptionError, match="calibration"):
        sparsify_model(copy.deepcopy(tiny_llama), parse_pattern(0.5, None), method="wanda")
