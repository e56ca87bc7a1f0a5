"""The kernel layout holds exactly the weights of the packing.py format (no Triton needed)."""

import pytest
import torch

from graphpress.backends.triton.layout import dequantize_kernel_weights, repack_for_kernels
from graphpress.backends.triton.reference import rtn_quantize
from graphpress.quantization.packing import dequantize


@pytest.mark.parametrize(
    "bits, group, in_features, symmetric",
    [(4, 32, 96, False), (4, 128, 200, True), (8, 72, 72, False), (3, 64, 100, False), (2, 16, 48, True),
     (4, 4, 20, False)],
)
def test_repack_dequantizes_to_the_packed_weights(bits, group, in_features, symmetric):
    torch.manual_seed(bits * 1000 + group)
    weight = torch.randn(24, in_features)
    q = rtn_quantize(weight, bits, group, symmetric=symmetric)
    expected = dequantize(q.qweight, q.scales, q.zeros, bits, group, in_features)
    kernel_weights = repack_for_kernels(q.qweight, q.scales, q.zeros, bits, group, in_features)
    got = dequantize_kernel_weights(kernel_weights).t()
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # int4 with whole words keeps its 4-bit words; everything else is widened to bytes.
    assert kernel_weights.bits == (4 if bits == 4 and group % 8 == 0 else 8)


def test_rtn_error_is_within_half_a_step():
    torch.manual_seed(0)
    weight = torch.randn(16, 256)
    q = rtn_quantize(weight, 4, 64)
    restored = dequantize(q.qweight, q.scales, q.zeros, 4, 64, 256)
    step = q.scales.repeat_interleave(64, dim=1)
    # Asymmetric RTN with an integer zero point: error at most one step (half from rounding, half from the zero).
    assert ((restored - weight).abs() <= step * 1.0001).all()
    assert (restored - weight).abs().mean() < step.mean() * 0.5


def test_repack_rejects_a_mismatched_qweight():
    q = rtn_quantize(torch.randn(8, 64), 4, 32)
    with pytest.raises(ValueError, match="qweight must be uint8"):
        repack_for_kernels(q.qweight, q.scales, q.zeros, 4, 32, 128)
