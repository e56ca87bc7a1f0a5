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


# --- Audit against the reference code of OWL (luuyin/OWL lib/prune_all.py) and LAMP (jaeho-lee/layer-adaptive-sparsity).

def _dense_input_norms(model, tokens):
    """||X_j||_2 of every decoder linear's input on the dense model, with plain forward hooks (no graphpress)."""
    sums, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in name:
            def hook(module, args, name=name):
                x = args[0].detach().double().reshape(-1, module.in_features)
                sums[name] = sums.get(name, 0) + x.square().sum(0)
            handles.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(input_ids=tokens, use_cache=False)
    for handle in handles:
        handle.remove()
    return {name: total.sqrt() for name, total in sums.items()}


def _blocks(model):
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    blocks = {}
    for name in names:
        blocks.setdefault(".".join(name.split(".")[:3]), []).append(name)
    return blocks


def _zeros_and_total(model, names):
    modules = dict(model.named_modules())
    return sum(int((modules[n].weight == 0).sum()) for n in names), sum(modules[n].weight.numel() for n in names)


def test_owl_ratios_match_a_hand_computation_of_the_reference(make_llama, calibration_tokens):
    model = make_llama(hidden=64, intermediate=128, layers=4)
    ratio, lam, m = 0.6, 0.08, 5.0
    norms = _dense_input_norms(model, calibration_tokens)
    modules = dict(model.named_modules())
    lod = []
    for names in _blocks(model).values():
        # The reference: one LOD per decoder layer over the concatenated Wanda metric of all its linears.
        metric = torch.cat([(modules[n].weight.detach().double().abs() * norms[n]).flatten() for n in names])
        lod.append(float((metric > m * metric.mean()).double().mean()))
    lod = torch.tensor(lod, dtype=torch.float64)
    shift = (lod - lod.min()) / (lod.max() - lod.min()) * lam * 2
    expected = ratio - (shift - shift.mean())  # density = shift - mean + (1 - ratio) in the reference
    assert lod.max() > lod.min()
    report = sparsify_model(model, parse_pattern(ratio, None), method="wanda", allocation="owl",
                            calibration=calibration_tokens, owl_lambda=lam, owl_threshold=m)
    for index, names in enumerate(_blocks(model).values()):
        for name in names:  # one ratio per decoder layer, the same for all its linears (up to one weight)
            assert report.layer_ratios[name] == pytest.approx(float(expected[index]),
                                                              abs=1.5 / modules[name].weight.numel())
    zeros, total = _zeros_and_total(model, report.layer_ratios)
    assert abs(zeros - round(ratio * total)) <= 1


def test_owl_prunes_the_block_with_more_outliers_less(make_llama, calibration_tokens):
    model = make_llama(hidden=64, intermediate=128, layers=3)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.model.layers[2].modules():  # the last block: the others see no change
            if isinstance(module, torch.nn.Linear):  # 3% of its weights become large: outlier Wanda scores
                chosen = torch.rand(module.weight.shape, generator=generator) < 0.03
                module.weight[chosen] *= 30.0
    report = sparsify_model(model, parse_pattern(0.6, None), method="wanda", allocation="owl",
                            calibration=calibration_tokens, owl_lambda=0.08)
    by_block = {i: report.layer_ratios[f"model.layers.{i}.mlp.up_proj"] for i in range(3)}
    assert by_block[2] == min(by_block.values()) and by_block[2] < 0.6 - 0.05
    assert max(by_block.values()) > 0.6


@pytest.mark.parametrize("allocation,ratio,lam", [("owl", 0.6, 0.08), ("owl", 0.95, 0.2), ("lamp", 0.6, 0.08),
                                                   ("lamp", 0.95, 0.08)])
def test_adaptive_allocation_hits_the_overall_ratio_exactly(allocation, ratio, lam, make_llama, calibration_tokens):
    model = make_llama(hidden=64, intermediate=128, layers=3)
    report = sparsify_model(model, parse_pattern(ratio, None), method="wanda", allocation=allocation,
                            calibration=calibration_tokens, owl_lambda=lam)
    zeros, total = _zeros_and_total(model, report.layer_ratios)
    assert abs(zeros - round(ratio * total)) <= 1  # the clamp at 0.99 is absorbed by the other layers
    assert max(report.layer_ratios.values()) <= 0.99 + 1e-3  # up to one weight of rounding


def _reference_lamp_amounts(weights, ratio):
    """The LAMP reference: scores w^2 / sum of w^2 of the weights >= it; keep the global top (1 - ratio)."""
    scores = []
    for w in weights:
        squared = w.double().flatten().square()
        ordered, index = squared.sort()
        normalised = torch.empty_like(squared)
        normalised[index] = ordered / ordered.flip(0).cumsum(0).flip(0)
        scores.append(normalised)
    total = sum(w.numel() for w in weights)
    threshold = torch.cat(scores).topk(round(total * (1 - ratio))).values[-1]
    return [1.0 - float((s >= threshold).sum()) / s.numel() for s in scores]


def test_lamp_ratios_match_the_reference_algorithm():
    torch.manual_seed(0)
    weights = [torch.randn(32, 48), torch.randn(64, 16) * 3.0, torch.randn(16, 16).abs() ** 2, torch.randn(8, 96)]
    ratios = lamp_ratios({str(i): w for i, w in enumerate(weights)}, 0.7)
    expected = _reference_lamp_amounts(weights, 0.7)
    for i, w in enumerate(weights):
        assert ratios[str(i)] == pytest.approx(expected[i], abs=2.0 / w.numel())


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_lamp_takes_magnitude_ratios_and_leaves_the_mask_to_the_method(method, make_llama, calibration_tokens):
    model = make_llama(hidden=64, intermediate=128, layers=2)
    reference = copy.deepcopy(model)
    lamp = sparsify_model(model, parse_pattern(0.6, None), method=method, allocation="lamp",
                          calibration=calibration_tokens)
    expected = lamp_ratios({n: m.weight.detach() for n, m in reference.named_modules()
                            if isinstance(m, torch.nn.Linear) and n in lamp.layer_ratios}, 0.6)
    modules = dict(model.named_modules())
    for name, realised in lamp.layer_ratios.items():
        assert realised == pytest.approx(expected[name], abs=1.5 / modules[name].weight.numel())
    if method == "wanda":  # Wanda's mask: compared within each output row, so rows differ by at most one zero
        for name in lamp.layer_ratios:
            per_row = (modules[name].weight == 0).sum(-1)
            assert int(per_row.max() - per_row.min()) <= 1


@pytest.mark.parametrize("allocation", ["owl", "lamp"])
def test_allocation_is_spread_only_over_the_linears_that_get_pruned(allocation, make_llama, calibration_tokens):
    model = make_llama(hidden=64, intermediate=128, layers=2)  # untied lm_head, outside the decoder blocks
    report = sparsify_model(model, parse_pattern(0.6, None), method="wanda", allocation=allocation, ignore=(),
                            calibration=calibration_tokens)
    assert "lm_head" in report.skipped and sparsity_of(model.lm_head.weight) == 0.0
    zeros, total = _zeros_and_total(model, report.layer_ratios)
    assert abs(zeros - round(0.6 * total)) <= 1


@pytest.mark.parametrize("allocation", ["uniform", "lamp"])
def test_a_tied_lm_head_is_never_pruned_with_the_embeddings(allocation, calibration_tokens):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    report = sparsify_model(model, parse_pattern(0.6, None), method="magnitude", allocation=allocation, ignore=())
    assert "lm_head" in report.skipped and sparsity_of(model.model.embed_tokens.weight) == 0.0
    assert abs(report.overall_ratio - 0.6) <= 1e-3
