"""Grids, packing round trips and the QuantizedLinear module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphpress.quantization import QuantizedLinear, QuantizedWeight, fake_quantize
from graphpress.quantization.packing import dequantize


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [0, 16, 64])
def test_packed_weight_dequantizes_to_fake_quantized_values(bits, group):
    torch.manual_seed(0)
    weight = torch.randn(8, 72)  # 72 is not a multiple of 16 or 64: the last group is padded
    q = QuantizedWeight.round_to_nearest(weight, bits, group, sym=False)
    restored = dequantize(q.qweight, q.scales, q.zeros, bits, q.group, 72)
    torch.testing.assert_close(restored, fake_quantize(weight, bits, group, sym=False), rtol=1e-5, atol=1e-6)
    step = (weight.max() - weight.min()) / (2**bits - 1)
    assert (restored - weight).abs().max() <= step / 2 + 1e-6


def test_float_zero_reproduces_a_min_offset_grid_exactly():
    # A Q4_1-like weight: every group of 32 is min + k * scale with k in 0..15 and a non-integer -min/scale.
    torch.manual_seed(0)
    codes = torch.randint(0, 16, (4, 64)).float()
    codes[:, ::32], codes[:, 1::32] = 0, 15  # each group spans the whole grid
    scale = torch.rand(4, 2, 1) + 0.1
    low = torch.rand(4, 2, 1) - 0.37
    weight = (codes.reshape(4, 2, 32) * scale + low).reshape(4, 64)
    torch.testing.assert_close(fake_quantize(weight, 4, 32, sym=False, integer_zero=False), weight, rtol=0, atol=1e-5)


def test_integer_zero_puts_zero_on_the_grid_and_keeps_constant_groups_exact():
    torch.manual_seed(0)
    weight = torch.randn(6, 64) * 0.02
    weight[:, 5] = 0.0
    restored = fake_quantize(weight, 3, 32, sym=False)
    assert torch.all(restored[:, 5] == 0.0)  # exact zeros stay zero (float zero points move them off zero)
    assert not torch.all(fake_quantize(weight, 3, 32, sym=False, integer_zero=False)[:, 5] == 0.0)
    q = QuantizedWeight.round_to_nearest(weight, 3, 32, sym=False)
    assert torch.equal(q.zeros, q.zeros.round())
    constant = torch.tensor([[0.3] * 16 + [-0.7] * 16 + [0.0] * 16])
    torch.testing.assert_close(fake_quantize(constant, 4, 16, sym=False), constant, rtol=0, atol=1e-7)


def test_symmetric_grid_has_fixed_zero():
    q = QuantizedWeight.round_to_nearest(torch.randn(3, 32), 4, 16, sym=True)
    assert torch.all(q.zeros == 8)


def test_quantized_linear_matches_dequantized_matmul_and_round_trips_state_dict():
    torch.manual_seed(0)
    linear = nn.Linear(40, 12)
    module = QuantizedLinear.from_linear(linear, bits=4, group=16)
    x = torch.randn(5, 40)
    expected = x @ module.dequantized_weight().T + linear.bias
    torch.testing.assert_close(module(x), expected)
    assert (module(x) - linear(x)).abs().max() < 0.25  # 4-bit weights: close, not equal
    assert module.qweight.dtype == torch.uint8 and module.qweight.shape == (12, 48 // 2)
    restored = QuantizedLinear(40, 12, bits=4, group=16, bias=True)
    restored.load_state_dict(module.state_dict())
    torch.testing.assert_close(restored(x), module(x))
    assert not any(t.dtype == torch.float32 and t.shape == (12, 40) for t in module.state_dict().values())


def test_per_token_activation_quantization_is_close():
    torch.manual_seed(0)
    module = QuantizedLinear.from_linear(nn.Linear(32, 8), bits=8, group=0, act_bits=8)
    x = torch.randn(4, 32)
    plain = x @ module.dequantized_weight().T + module.bias
    assert 0 < (module(x) - plain).abs().max() < 0.05
