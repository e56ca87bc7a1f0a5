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
    paired = ops.paired_gemv_applies(x, w) if m == 1 else ops.pairs_apply(x, w)
    for config in candidate_configs(m, n, w.padded_in_features, group, 132, paired)[:24]:
        out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)
        ops._launch(x, w, config, out)
        assert torch.isfinite(out).all(), f"{config}: an output was never written"
        error = float((out.double() - reference.double()).norm() / reference.double().norm())
        assert error < 5e-3, f"{config}: relative error {error:.2e}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m, n, k, group", [(16, 4096, 4096, 128), (5, 1024, 11008, 128), (70, 2048, 1024, 64),
                                            (128, 4096, 2048, 128)])
def test_gluon_launches_are_correct(dtype, m, n, k, group):
    # gluon_swap.py (asynchronous wgmma): every candidate, partial row blocks, K splits meeting in the kernel;
    # each launch twice, so a split-K counter left unreset would show.
    w = _weights(n, k, group, seed=m + k)
    x = torch.randn(m, k, device="cuda", dtype=dtype) + 0.1
    if not ops.gluon_applies(x, w):
        pytest.skip("Gluon does not run here (Triton without it, or not Hopper)")
    reference = x.float() @ dequantize_kernel_weights(w)
    configs = [c for c in candidate_configs(m, n, w.padded_in_features, group, 132, True, gluon=True) if c.gluon]
    assert configs
    for config in configs:
        for _ in range(2):
            out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)
            ops._launch(x, w, config, out)
            error = float((out.double() - reference.double()).norm() / reference.double().norm())
            assert torch.isfinite(out).all() and error < 5e-3, f"{config}: relative error {error:.2e}"


@pytest.mark.parametrize("bits, n, k, group", [(4, 4096, 11008, 128), (4, 1000, 2752, 64), (8, 4096, 11008, 128)])
def test_deep_batch1_tiles_are_correct(bits, n, k, group):
    """Tiles of several groups (no or few K splits), with a partial last tile where the tile does not divide K
    (11008 = 21.5 x 512) and a ragged column block (1000)."""
    gen = torch.Generator(device="cuda").manual_seed(bits + n)
    q = rtn_quantize(torch.randn(n, k, device="cuda", generator=gen) * 0.02, bits, group)
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, bits, group, k, meta_dtype=torch.float16)
    x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16) + 0.1
    reference = x.float() @ dequantize_kernel_weights(w)
    deep = [c for c in candidate_configs(1, n, w.padded_in_features, group, 132, True, bits) if c.block_k > group]
    assert deep and ops.paired_gemv_applies(x, w)
    for config in deep:
        out = torch.full((1, n), float("nan"), device="cuda", dtype=torch.bfloat16)
        ops._launch(x, w, config, out)
        error = float((out.double() - reference.double()).norm() / reference.double().norm())
        assert torch.isfinite(out).all() and error < 5e-3, f"{config}: relative error {error:.2e}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("outliers", [False, True])
def test_int8_paired_gemv_candidates_are_correct(dtype, outliers):
    """With ``outliers``, every seventh activation is in the thousands (as a down projection's inputs are):
    the float16 products of exact int8 codes must not overflow."""
    gen = torch.Generator(device="cuda").manual_seed(8)
    weight = torch.randn(4096, 4096, device="cuda", generator=gen) * 0.02
    q = rtn_quantize(weight, 8, None)  # per channel
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, 8, q.group, 4096)
    group = q.group
    x = torch.randn(1, 4096, device="cuda") + 0.1
    if outliers:
        x[0, ::7] *= 3000.0
    x = x.to(dtype)
    reference = x.float() @ dequantize_kernel_weights(w)
    assert ops.paired_gemv_applies(x, w)  # int8 words with integer zero points: the paired kernel
    configs = candidate_configs(1, 4096, w.padded_in_features, group, 132, paired=True, bits=8)
    assert any(c.split_k > 1 for c in configs)
    for config in configs[:24]:
        out = torch.full((1, 4096), float("nan"), device="cuda", dtype=dtype)
        ops._launch(x, w, config, out)
        error = float((out.double() - reference.double()).norm() / reference.double().norm())
        assert torch.isfinite(out).all() and error < 5e-3, f"{config}: relative error {error:.2e}"


@pytest.mark.parametrize("mode", ["off", "chain", "wait", "prefetch"])
def test_programmatic_dependent_launch_reads_what_the_previous_kernel_wrote(mode, monkeypatch):
    """A chain in one CUDA graph where every product reads the output of the kernel just before it (an
    elementwise kernel, then graphpress's own GEMVs back to back), replayed with new inputs: with PDL the
    next kernel starts early, and must still see its producer's writes.  In mode ``chain`` the second
    product is the marked dependent of the first."""
    monkeypatch.setenv("GRAPHPRESS_PDL", mode)
    first = _weights(4096, 4096, 128, seed=1)
    second = _weights(11008, 4096, 128, seed=2)
    third = _weights(4096, 11008, 128, seed=3)
    source = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)

    def chain():
        h = ops.launch_quant_matmul(source * 2.0, first)
        h = ops.launch_quant_matmul(h, second, follows_product=True)
        return ops.launch_quant_matmul(torch.nn.functional.silu(h), third)

    for w in (first, second, third):
        ops.tune(w, (1,))
    chain()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = chain()
    for seed in range(3):
        source.copy_(torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16, generator=torch.Generator(
            device="cuda").manual_seed(seed)))
        graph.replay()
        h = (source.float() * 2.0) @ dequantize_kernel_weights(first)
        h = torch.nn.functional.silu((h.bfloat16().float() @ dequantize_kernel_weights(second)).bfloat16().float())
        reference = h.bfloat16().float() @ dequantize_kernel_weights(third)
        error = float((out.double() - reference.double()).norm() / reference.double().norm())
        assert error < 1e-2, f"replay {seed}: relative error {error:.2e}"


@pytest.mark.parametrize("family", ["Llama", "Gemma"])
def test_lower_triton_runs_gated_mlps_as_one_product_with_the_same_outputs(family):
    """quantize + lower-triton on a small Llama (SiLU) or Gemma (tanh-GELU) on the GPU: every MLP becomes a
    GatedMLP (the activation in the batch-1 kernel's epilogue), and the outputs are the one-for-one lowering's."""
    import copy

    import transformers

    import graphpress
    from graphpress.backends.gated_mlp import GatedMLP

    torch.manual_seed(0)
    config = getattr(transformers, f"{family}Config")(
        vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, max_position_embeddings=64, pad_token_id=0)
    model = getattr(transformers, f"{family}ForCausalLM")(config).to("cuda", torch.bfloat16).eval()
    ids = torch.randint(0, 256, (1, 8), device="cuda")
    kw = {"use_cache": False}
    quantized = graphpress.optimize(model, "quantize{bits=4,group=64}", example_inputs=(ids,), example_kwargs=kw)
    plain = graphpress.optimize(copy.deepcopy(quantized), "lower-triton{gated_mlp=false}", example_inputs=(ids,),
                                example_kwargs=kw)
    gated, report = graphpress.optimize(quantized, "lower-triton", example_inputs=(ids,), example_kwargs=kw,
                                        return_report=True)
    assert report.records[-1].stats["gated_mlps"] == 2
    assert isinstance(gated.model.layers[0].mlp, GatedMLP)
    for tokens in (ids, ids[:, :1]):  # the prompt (torch epilogue) and one decode row (the kernel's)
        with torch.no_grad():
            expected, got = plain(tokens, **kw).logits.float(), gated(tokens, **kw).logits.float()
        assert float((got - expected).norm() / expected.norm()) < 2e-2


def test_the_fusion_pipeline_lowers_to_split_products_and_compiles_with_cuda_graphs():
    """fuse-qkv, fuse-gate-up, quantize, lower-triton on a small Llama on the GPU: q/k/v one split Triton
    product, each MLP a chained GatedMLP; eager and torch.compile (reduce-overhead, CUDA graphs) decode rows
    agree with the unfused pipeline.  The example ids are given on the CPU: optimize moves them to the model."""
    import copy

    import transformers

    import graphpress
    from graphpress.backends.gated_mlp import GatedMLP

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    ids = torch.randint(0, 256, (1, 8), device="cuda")
    kw = {"use_cache": False}
    plain = graphpress.optimize(copy.deepcopy(model), "quantize{bits=4,group=64},lower-triton", example_inputs=(ids,),
                                example_kwargs=kw)
    fused, report = graphpress.optimize(model, "fuse-qkv,fuse-gate-up,quantize{bits=4,group=64},lower-triton",
                                        example_inputs=(ids.cpu(),), example_kwargs=kw, return_report=True)
    assert report.records[-1].stats == {"lowered": 10, "gated_mlps": 2, "chained": 2}
    assert fused.model.layers[0].self_attn.fused_q_proj_k_proj_v_proj.split_sizes == [256, 128, 128]
    assert isinstance(fused.model.layers[1].mlp, GatedMLP)
    step = torch.compile(lambda t: fused(t, **kw).logits, mode="reduce-overhead")
    for tokens in (ids, ids[:, :1], ids[:, 1:2]):
        with torch.no_grad():
            expected = plain(tokens, **kw).logits.float()
            for got in (fused(tokens, **kw).logits.float(), step(tokens).float().clone()):
                assert float((got - expected).norm() / expected.norm()) < 2e-2



def test_lower_triton_keeps_functionally_read_linears_running():
    """torchvision's Swin reads ``self.qkv.weight`` for ``F.linear`` itself: after quantize and lower-triton the
    swapped modules must still give that code their (dequantized) weight, on the GPU as on the CPU."""
    import torch.nn.functional as F
    from torch import nn

    import graphpress
    from graphpress.backends.triton import TritonQuantLinear

    class Attention(nn.Module):
        def __init__(self, dim: int = 64) -> None:
            super().__init__()
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = F.linear(x, self.qkv.weight, self.qkv.bias).chunk(3, dim=-1)
            attention = torch.softmax(q @ k.transpose(-1, -2) / 8, dim=-1)
            return F.linear(attention @ v, self.proj.weight, self.proj.bias)

    torch.manual_seed(0)
    model = Attention().eval().to("cuda", torch.float16)
    x = torch.randn(2, 8, 64, device="cuda", dtype=torch.float16) + 0.1
    quantized = graphpress.optimize(model, "quantize{bits=8,group=0}", example_inputs=(x,))
    expected = quantized(x).float()
    lowered, report = graphpress.optimize(quantized, "lower-triton", example_inputs=(x,), return_report=True)
    assert report.records[-1].stats["lowered"] == 2 and isinstance(lowered.qkv, TritonQuantLinear)
    out = lowered(x).float()
    assert torch.isfinite(out).all() and float((out - expected).norm() / expected.norm()) < 5e-3
