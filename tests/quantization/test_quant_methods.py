"""Each quantizer on a tiny Llama: valid model, error below RTN where the method promises it, bad options fail early."""

from __future__ import annotations

import copy

import pytest
import torch

from graphpress.errors import OptionError
from graphpress.quantization import QuantizedLinear, quantize_model
from graphpress.quantization.gptq import gptq_quantize
from graphpress.quantization.grid import QuantizedWeight
from graphpress.quantization.hqq import hqq_quantize
from graphpress.quantization.packing import dequantize


def relative_error(model, reference, tokens) -> float:
    with torch.no_grad():
        out, ref = model(tokens).logits, reference(tokens).logits
    return ((out - ref).pow(2).mean() / ref.pow(2).mean()).item()


def restored(q: QuantizedWeight) -> torch.Tensor:
    return dequantize(q.qweight, q.scales, q.zeros, q.bits, q.group, q.in_features)


@pytest.mark.parametrize("method", ["rtn", "hqq", "gptq", "awq", "awq-gptq", "smoothquant"])
def test_every_method_replaces_all_decoder_linears(method, tiny_llama, tokens):
    reference = copy.deepcopy(tiny_llama)
    report = quantize_model(tiny_llama, bits=4, group=32, method=method, calibration=tokens)
    quantized = [n for n, m in tiny_llama.named_modules() if isinstance(m, QuantizedLinear)]
    assert len(quantized) == 14 and report.layers and not report.fallback_rtn
    assert "lm_head" not in quantized
    assert relative_error(tiny_llama, reference, tokens) < 0.05
    assert 0.15 < report.size_ratio < 0.25  # 4-bit codes + fp32 scale/zero per 32 weights: 0.1875
    assert tiny_llama.config.graphpress_quantization["modules"]


def test_gptq_beats_rtn_on_the_calibration_objective():
    torch.manual_seed(0)
    # Correlated inputs (rank 24 plus noise), as in real activations: GPTQ's error feedback has room to work.
    x = torch.randn(512, 24) @ torch.randn(24, 64) + 0.1 * torch.randn(512, 64)
    x[:, 5] = 0.0  # a dead input
    weight = torch.randn(32, 64)
    hessian = (2 / 512) * (x.T @ x).double()
    error = lambda q: ((x @ (restored(q) - weight).T) ** 2).sum().item()  # noqa: E731
    rtn = error(QuantizedWeight.round_to_nearest(weight, 3, 16, sym=False))
    assert error(gptq_quantize(weight, hessian, 3, 16)) < 0.8 * rtn
    assert error(gptq_quantize(weight, hessian, 3, 16, act_order=True)) < 0.8 * rtn
    # 60 columns: the last group of 16 is padded, and GPTQ still wins.
    narrow_error = lambda q: ((x[:, :60] @ (restored(q) - weight[:, :60]).T) ** 2).sum().item()  # noqa: E731
    narrow_rtn = narrow_error(QuantizedWeight.round_to_nearest(weight[:, :60], 3, 16, sym=False))
    assert narrow_error(gptq_quantize(weight[:, :60], hessian[:60, :60], 3, 16)) < 0.8 * narrow_rtn


def test_hqq_lowers_its_lp_objective():
    torch.manual_seed(0)
    weight = torch.randn(16, 128)
    weight[0, 3] = 12.0  # an outlier that stretches its group's grid
    lp = lambda q: (restored(q) - weight).abs().pow(0.7).sum().item()  # noqa: E731
    assert lp(hqq_quantize(weight, 3, 64)) < lp(QuantizedWeight.round_to_nearest(weight, 3, 64, sym=False))


def test_awq_and_gptq_beat_rtn_on_a_model(tiny_llama, tokens):
    errors = {}
    for method in ("rtn", "gptq", "awq"):
        candidate = copy.deepcopy(tiny_llama)
        quantize_model(candidate, bits=3, group=0, method=method, calibration=tokens)
        errors[method] = relative_error(candidate, tiny_llama, tokens)
    assert errors["gptq"] < errors["rtn"] and errors["awq"] < errors["rtn"]


@pytest.mark.parametrize("options, named", [
    ({"bits": 5}, "bits"), ({"group": 30}, "group"), ({"method": "magic"}, "method"),
    ({"method": "gptq"}, "calibration"), ({"act_order": True}, "act_order"), ({"damp": 0.0, "method": "gptq"}, "damp"),
])
def test_bad_options_fail_before_any_work(options, named, tiny_llama):
    before = {k: v.clone() for k, v in tiny_llama.state_dict().items()}
    with pytest.raises(OptionError, match=named):
        quantize_model(tiny_llama, **options)
    assert all(torch.equal(before[k], v) for k, v in tiny_llama.state_dict().items())


def test_ignore_globs_keep_layers_in_float(tiny_llama):
    report = quantize_model(tiny_llama, bits=8, group=0, ignore=("lm_head", "*.mlp.*"))
    assert len(report.layers) == 8
    assert type(tiny_llama.model.layers[0].mlp.down_proj) is torch.nn.Linear
