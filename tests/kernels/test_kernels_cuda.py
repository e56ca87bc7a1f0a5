"""The compiled kernels (inline PTX included) on a real GPU; skipped where there is none.

Run: ``GRAPHPRESS_TEST_CUDA=1 python -m pytest tests/kernels/test_kernels_cuda.py``.

The CPU suite runs the kernels under Triton's interpreter, which emulates the paired float16 arithmetic
instead of executing the PTX. These checks run the real thing on every path, with poisoned outputs and
random (never zero) inputs, against a float32 product with the dequantized weights.
"""

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from graphpress.backends.triton import ops  # noqa: E402
from graphpress.backends.triton.configs import candidate_configs  # noqa: E402
from graphpress.backends.triton.layout import dequantize_kernel_weights, repack_for_kernels  # noqa: E402
from graphpress.backends.triton.reference import rtn_quantize  # noqa: E402

if ops.interpreting():
    pytest.skip("TRITON_INTERPRET=1 is set: the interpreter tests cover this", allow_module_level=True)


def _weights(n, k, group, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight = torch.randn(n, k, device="cuda", generator=gen) * 0.02
    q = rtn_quantize(weight, 4, group)
    return repack_for_kernels(q.qweight, q.scales, q.zeros, 4, group, k, meta_dtype=torch.float16)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m, n, k, group", [(1, 4096, 4096, 128), (1, 1000, 2752, 64), (1, 384, 330, 128),
                                            (16, 2048, 1024, 128), (128, 1024, 2048, 64)])
def test_every_candidate_launch_is_correct(dtype, m, n, k, group):
    w = _weights(n, k, group, seed=m + n)
    x = torch.randn(m, k, device="cuda", dtype=dtype) + 0.1
    reference = x.float() @ dequantize_kernel_weights(w)
    paired = ops.paired_int4_applies(x, w) if m == 1 else ops.pairs_apply(x, w)
    for config in candidate_configs(m, n, w.padded_in_features, group, 132, paired)[:24]:
        out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)
        ops._launch(x, w, config, out)
        assert torch.isfinite(out).all(), f"{config}: an output was never written"
        error = float((out.double() - reference.double()).norm() / reference.double().norm())
        assert error < 5e-3, f"{config}: relative error {error:.2e}"
