"""The Triton kernels compute x @ dequant(W) on every path, checked under Triton's CPU interpreter.

Each check draws fresh random inputs (never zeros), poisons the output buffer first so an unwritten
element shows up, and compares with a float32 product against the dequantized weights.
"""

import pytest
import torch

pytest.importorskip("triton")

from graphpress.backends.triton import ops  # noqa: E402
from graphpress.backends.triton.configs import LaunchConfig, candidate_configs, kernel_path, pair_split  # noqa: E402
from graphpress.backends.triton.layout import dequantize_kernel_weights, repack_for_kernels  # noqa: E402
from graphpress.backends.triton.reference import rtn_quantize  # noqa: E402
from graphpress.backends.triton.splitk import partials_in_flight  # noqa: E402

if not ops.interpreting():
    pytest.skip("these tests run the kernels under TRITON_INTERPRET=1", allow_module_level=True)

MAX_RELATIVE_ERROR = 5e-3


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(got).all(), "an output element was never written (poison survived) or is not finite"
    return float((got.double() - ref.double()).norm() / ref.double().norm())


def _check(bits, group, in_features, out_features, rows, config, dtype=torch.float32, symmetric=False, seed=0,
           meta_dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=gen)
    q = rtn_quantize(weight, bits, group, symmetric=symmetric)
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, bits, group, in_features, meta_dtype=meta_dtype)
    x = (torch.randn(rows, in_features, generator=gen) + 0.1).to(dtype)
    out = torch.full((rows, out_features), float("nan"), dtype=dtype)
    ops._launch(x, w, config, out)
    ref = x.float() @ dequantize_kernel_weights(w)
    return _relative_error(out, ref)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_gemv_split_k(group, symmetric):
    # 3 K splits of a 384-wide input, and an N that leaves a partial column block.
    config = LaunchConfig(block_m=1, block_n=32, block_k=32, split_k=3, num_warps=2, num_stages=1)
    assert _check(4, group, 384, 72, 1, config, symmetric=symmetric, seed=group) < MAX_RELATIVE_ERROR


def test_int4_gemv_tile_spanning_groups_and_ragged_k():
    # BLOCK_K 64 > group 32 takes the per-element metadata path; K=100 is not a multiple of the group.
    config = LaunchConfig(block_m=1, block_n=16, block_k=64, split_k=1, num_warps=2, num_stages=1)
    assert _check(4, 32, 100, 40, 1, config, seed=3) < MAX_RELATIVE_ERROR


def test_int8_per_channel_gemv():
    config = LaunchConfig(block_m=1, block_n=32, block_k=32, split_k=2, num_warps=2, num_stages=1)
    assert _check(8, 160, 160, 48, 1, config, seed=4) < MAX_RELATIVE_ERROR


@pytest.mark.parametrize("bits, group, rows, split", [(4, 64, 5, 2), (4, 128, 33, 1), (8, 96, 16, 3), (3, 32, 7, 1)])
def test_small_batch_dot_path(bits, group, rows, split):
    config = LaunchConfig(block_m=16, block_n=32, block_k=32, split_k=split, num_warps=4, num_stages=2)
    assert _check(bits, group, 192, 48, rows, config, seed=rows) < MAX_RELATIVE_ERROR


def test_dot_path_with_broadcast_address_unpacking():
    config = LaunchConfig(block_m=16, block_n=32, block_k=64, split_k=2, num_warps=4, num_stages=2,
                          unpack_by_words=False)
    assert _check(4, 32, 192, 48, 6, config, seed=6) < MAX_RELATIVE_ERROR


def test_gemm_path_with_partial_tiles():
    config = LaunchConfig(block_m=32, block_n=32, block_k=64, split_k=1, num_warps=4, num_stages=2)
    assert _check(4, 64, 128, 40, 70, config, seed=70) < MAX_RELATIVE_ERROR


def test_bfloat16_activations():
    config = LaunchConfig(block_m=1, block_n=32, block_k=32, split_k=2, num_warps=2, num_stages=1)
    assert _check(4, 32, 128, 64, 1, config, dtype=torch.bfloat16, seed=11) < MAX_RELATIVE_ERROR
    config = LaunchConfig(block_m=16, block_n=32, block_k=32, split_k=2, num_warps=4, num_stages=2)
    assert _check(4, 32, 128, 64, 9, config, dtype=torch.bfloat16, seed=12) < MAX_RELATIVE_ERROR


def test_custom_op_uses_the_default_config_and_keeps_leading_dims():
    torch.manual_seed(5)
    q = rtn_quantize(torch.randn(48, 96), 4, 32)
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, 4, 32, 96)
    x = torch.randn(2, 3, 96)
    out = torch.ops.graphpress.quant_matmul(x, w.packed, w.scales, w.offsets, 4, 32, 96)
    assert out.shape == (2, 3, 48)
    assert _relative_error(out, x @ dequantize_kernel_weights(w)) < MAX_RELATIVE_ERROR


def test_candidates_cover_every_path_and_tile_the_group():
    assert [kernel_path(m) for m in (1, 2, 64, 65)] == ["gemv", "small", "small", "gemm"]
    for m in (1, 16, 128):
        configs = candidate_configs(m, 4096, 4096, 128, 132)
        assert configs, m
        assert all(128 % c.block_k == 0 or c.block_k % 128 == 0 for c in configs)
    # A narrow layer gets K splits so that its programs fill the 132 multiprocessors.
    assert max(c.split_k for c in candidate_configs(1, 4096, 4096, 128, 132)) >= 4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("group, block_k, split", [(64, 64, 1), (128, 64, 3), (128, 128, 2), (64, 256, 1),
                                                   (64, 256, 2), (128, 256, 1)])
def test_paired_int4_gemv(dtype, group, block_k, split):
    # The paired float16 kernel (gemv_pairs.py, emulated arithmetic under the interpreter): split-K with the
    # in-kernel last-arrival reduction, ragged and full column blocks, K a multiple of the group or not, and
    # deep tiles of several groups (block_k 256), whose last tile is partial where 256 does not divide K
    # (384 and 448 inputs: half and three quarters of it hold inputs).
    config = LaunchConfig(block_m=1, block_n=32, block_k=block_k, split_k=split, num_warps=2, num_stages=1)
    for in_features, out_features in ((384, 72), (330, 72), (384, 64), (448, 64)):
        x = torch.zeros(1, in_features, dtype=dtype)
        q = rtn_quantize(torch.randn(8, in_features), 4, group)
        w = repack_for_kernels(q.qweight, q.scales, q.zeros, 4, group, in_features, meta_dtype=torch.float16)
        assert ops.paired_gemv_applies(x, w)
        error = _check(4, group, in_features, out_features, 1, config, dtype=dtype, seed=group + split,
                       meta_dtype=torch.float16)
        assert error < MAX_RELATIVE_ERROR
    assert ops._counters(torch.device("cpu")).abs().sum() == 0  # every arrival counter was reset


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("group, block_k, split", [(None, 32, 1), (None, 64, 3), (128, 32, 2), (64, 64, 1),
                                                   (64, 128, 2)])
def test_paired_int8_gemv(dtype, group, block_k, split):
    # int8 words (4 codes along K) on the paired kernel: per-channel and grouped, split-K, ragged columns.
    config = LaunchConfig(block_m=1, block_n=32, block_k=block_k, split_k=split, num_warps=2, num_stages=1)
    for in_features, out_features in ((384, 72), (320, 64)):
        gen = torch.Generator().manual_seed(in_features + split)
        q = rtn_quantize(torch.randn(out_features, in_features, generator=gen), 8, group)
        w = repack_for_kernels(q.qweight, q.scales, q.zeros, 8, q.group, in_features)
        x = (torch.randn(1, in_features, generator=gen) + 0.1).to(dtype)
        assert w.packed.dtype == torch.int32 and ops.paired_gemv_applies(x, w) and ops._takes_paired_gemv(x, w, config)
        out = torch.full((1, out_features), float("nan"), dtype=dtype)
        ops._launch(x, w, config, out)
        assert _relative_error(out, x.float() @ dequantize_kernel_weights(w)) < MAX_RELATIVE_ERROR


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_paired_gemv_stays_finite_for_large_activations(bits, dtype):
    # Down projections of real LLMs see activations in the thousands; int8's float16 products of exact
    # codes (|q - zero| up to 255) overflowed above about 128 before the activations were scaled down.
    config = LaunchConfig(block_m=1, block_n=32, block_k=64 if bits == 8 else 128, split_k=2, num_warps=2,
                          num_stages=1)
    gen = torch.Generator().manual_seed(bits)
    q = rtn_quantize(torch.randn(64, 512, generator=gen), bits, 128 if bits == 4 else None)
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, bits, q.group, 512,
                           meta_dtype=torch.float16 if bits == 4 else torch.float32)
    x = torch.randn(1, 512, generator=gen) + 0.1
    x[0, ::7] *= 3000.0  # outlier features, as LLM activations have
    x = x.to(dtype)
    assert ops._takes_paired_gemv(x, w, config)
    out = torch.full((1, 64), float("nan"), dtype=dtype)
    ops._launch(x, w, config, out)
    assert _relative_error(out, x.float() @ dequantize_kernel_weights(w)) < MAX_RELATIVE_ERROR


def test_int8_words_need_integer_zero_points_for_the_paired_kernel():
    q = rtn_quantize(torch.randn(16, 128), 8, None)
    assert repack_for_kernels(q.qweight, q.scales, q.zeros, 8, q.group, 128).meta_pairs is not None
    fractional = repack_for_kernels(q.qweight, q.scales, q.zeros + 0.5, 8, q.group, 128)  # HQQ-style zeros
    assert fractional.meta_pairs is None and not ops.paired_gemv_applies(torch.zeros(1, 128, dtype=torch.bfloat16),
                                                                          fractional)
    odd = rtn_quantize(torch.randn(16, 6), 8, None)  # K not a multiple of 4: bytes, the float32 kernel
    w = repack_for_kernels(odd.qweight, odd.scales, odd.zeros, 8, odd.group, 6)
    assert w.packed.dtype == torch.uint8 and w.codes_per_word == 1 and w.meta_pairs is None
    assert _check(8, 6, 6, 16, 1, LaunchConfig(1, 16, 16, 1, 2, 1), seed=2) < MAX_RELATIVE_ERROR
    assert all(4096 % c.block_k == 0 for c in candidate_configs(1, 4096, 4096, 4096, 132, paired=True, bits=8))


def test_paired_int4_gemv_is_chosen_only_where_it_applies():
    q = rtn_quantize(torch.randn(8, 128), 4, 64)
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, 4, 64, 128, meta_dtype=torch.float16)
    assert ops.paired_gemv_applies(torch.zeros(1, 128, dtype=torch.bfloat16), w)
    w_float32_meta = repack_for_kernels(q.qweight, q.scales, q.zeros, 4, 64, 128, meta_dtype=torch.float32)
    assert not ops.paired_gemv_applies(torch.zeros(1, 128, dtype=torch.bfloat16), w_float32_meta)
    assert not ops.paired_gemv_applies(torch.zeros(1, 128), w)  # float32 activations
    assert not ops.paired_gemv_applies(torch.zeros(2, 128, dtype=torch.bfloat16), w)  # not a GEMV
    q32 = rtn_quantize(torch.randn(8, 128), 4, 32)
    w32 = repack_for_kernels(q32.qweight, q32.scales, q32.zeros, 4, 32, 128, meta_dtype=torch.float16)
    assert not ops.paired_gemv_applies(torch.zeros(1, 128, dtype=torch.bfloat16), w32)  # group below a tile
    assert kernel_path(1, paired=True) == "gemv-pairs"
    paired = candidate_configs(1, 4096, 4096, 128, 132, paired=True)
    assert all(c.block_k in (64, 128) or c.block_k % 128 == 0 for c in paired)
    assert any(c.block_k > 128 and c.split_k == 1 for c in paired)  # deep tiles: several groups, no K split


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rows, group, block_m, block_k, split", [(5, 64, 16, 64, 2), (16, 128, 16, 64, 1),
                                                                  (33, 128, 64, 128, 1)])
def test_tensor_core_path_with_float16_pairs(dtype, rows, group, block_m, block_k, split):
    # pairs.py's loader: words decoded two at a time, interleaved back into K order for tl.dot.
    config = LaunchConfig(block_m=block_m, block_n=32, block_k=block_k, split_k=split, num_warps=4, num_stages=2,
                          pairs=True)
    for in_features, out_features in ((256, 48), (200, 64)):
        error = _check(4, group, in_features, out_features, rows, config, dtype=dtype, seed=rows + group,
                       meta_dtype=torch.float16)
        assert error < MAX_RELATIVE_ERROR


def test_pairs_are_offered_to_the_tuner_only_where_they_apply():
    assert any(c.pairs for c in candidate_configs(16, 4096, 4096, 128, 132, paired=True))
    assert not any(c.pairs for c in candidate_configs(16, 4096, 4096, 128, 132))
    assert kernel_path(16, paired=True) == "small-pairs" and kernel_path(128) == "gemm"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rows, group, block_m, block_k, split", [(5, 64, 16, 32, 2), (16, 128, 16, 64, 1),
                                                                  (33, 128, 64, 128, 1), (70, 64, 64, 64, 3),
                                                                  (70, 64, 64, 32, 8)])
def test_swapped_operand_kernel(dtype, rows, group, block_m, block_k, split):
    # swap_ab.py: out^T = W @ x^T with K renumbered inside each tile; ragged N and K, partial row blocks.
    config = LaunchConfig(block_m=block_m, block_n=32, block_k=block_k, split_k=split, num_warps=4, num_stages=2,
                          pairs=True, swap_ab=True)
    for in_features, out_features in ((256, 48), (200, 64)):
        error = _check(4, group, in_features, out_features, rows, config, dtype=dtype, seed=rows + group + block_k,
                       meta_dtype=torch.float16)
        assert error < MAX_RELATIVE_ERROR


def test_gluon_launches_are_offered_only_where_the_kernel_can_take_them():
    # gluon_swap.py: int4 pairs on a GPU that runs it, tiles dividing N, splits of whole pairs of K tiles.
    def gluon(m, n, kp, group=128, **kw):
        return [c for c in candidate_configs(m, n, kp, group, 132, **kw) if c.gluon]
    assert not gluon(16, 4096, 4096, paired=True) and not gluon(16, 4096, 4096, paired=False, gluon=True)
    assert not gluon(1, 4096, 4096, paired=True, gluon=True)  # batch 1 has its own kernel
    offered = gluon(16, 4096, 11008, paired=True, gluon=True) + gluon(128, 4096, 11008, paired=True, gluon=True)
    assert offered and all(c.swap_ab and c.pairs for c in offered)
    for config in offered:
        per_split, splits = pair_split(11008, config.block_k, config.split_k, config.parts)
        share = 2 * config.block_k * config.parts  # a pair of K tiles for each warp group of a program
        assert (splits > 1 or config.parts > 1) and per_split % share == 0
        assert (11008 - (splits - 1) * per_split) % share == 0
    several = [c for c in offered if c.parts > 1]
    assert several and all(c.num_warps == 4 and c.block_m <= 64 for c in several)  # 4 warps per group
    assert any(c.split_k == 1 for c in several)  # their groups meet in shared memory: no split needed
    assert all(c.block_n <= 64 for c in gluon(16, 4160, 4096, paired=True, gluon=True))  # 128 does not divide 4160
    assert not gluon(16, 4096, 4096, group=32, paired=True, gluon=True)  # tiles of 64 inputs exceed the group


def test_partials_in_flight_divide_the_splits_within_the_register_budget():
    # (70, 64, 64, 32, 8) above: 16 floats per thread, so the last program loads its 8 partials as 2 x 4.
    assert partials_in_flight(8, 64 * 32, 128) == 4
    assert partials_in_flight(8, 16 * 64, 128) == 8
    assert partials_in_flight(12, 16 * 64, 128) == 6
    assert partials_in_flight(4, 64 * 128, 128) == 1  # a 64-float tile: one partial at a time
    assert partials_in_flight(1, 16 * 64, 128) == 1


def test_activations_unreadable_as_pairs_take_the_unswapped_kernel():
    # The swapped kernel reads activations as 32-bit pairs; an odd row stride or a 2-byte offset (a view)
    # cannot be, and a swapped launch given such activations runs the ordinary tensor-core kernel instead.
    config = LaunchConfig(block_m=16, block_n=32, block_k=64, split_k=1, num_warps=4, num_stages=2, pairs=True,
                          swap_ab=True)
    q = rtn_quantize(torch.randn(48, 256), 4, 64)
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, 4, 64, 256, meta_dtype=torch.float16)
    base = torch.randn(7, 257).to(torch.bfloat16)
    for x in (base[:, 1:], base[:, :256]):
        assert not ops.pairs_apply(x, w)
        out = torch.full((7, 48), float("nan"), dtype=torch.bfloat16)
        ops._launch(x, w, config, out)
        assert _relative_error(out, x.float() @ dequantize_kernel_weights(w)) < MAX_RELATIVE_ERROR
    assert ops.pairs_apply(base[:, :256].contiguous(), w)


def test_swapped_operand_launches_are_offered_only_for_paired_int4():
    small = candidate_configs(16, 4096, 4096, 128, 132, paired=True)
    large = candidate_configs(128, 4096, 4096, 128, 132, paired=True)
    assert any(c.swap_ab for c in small) and any(c.swap_ab and c.block_m == 128 for c in large)
    assert all(c.pairs and c.block_k % 32 == 0 and 128 % c.block_k == 0 for c in small + large if c.swap_ab)
    assert not any(c.swap_ab for c in candidate_configs(16, 4096, 4096, 128, 132))
    assert not any(c.swap_ab for c in candidate_configs(1, 4096, 4096, 128, 132, paired=True))
