"""TritonQuantLinear and lower_linear_modules: fused splits, fallback, lowering a model, torch.compile."""

import logging

import pytest
import torch
from torch import nn

pytest.importorskip("triton")

from graphpress.backends.triton import TritonQuantLinear, lower_linear_modules, rtn_quantize  # noqa: E402
from graphpress.backends.triton import linear as linear_module  # noqa: E402
from graphpress.backends.triton.ops import interpreting  # noqa: E402
from graphpress.errors import BackendError  # noqa: E402
from graphpress.quantization.packing import dequantize  # noqa: E402

if not interpreting():
    pytest.skip("these tests run the kernels under TRITON_INTERPRET=1", allow_module_level=True)


def _dense(q) -> torch.Tensor:
    return dequantize(q.qweight, q.scales, q.zeros, q.bits, q.group, q.in_features)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert torch.isfinite(a).all()
    return float((a - b).norm() / b.norm())


def test_single_projection_with_bias_matches_dequantized_product():
    torch.manual_seed(0)
    q = rtn_quantize(torch.randn(40, 96), 4, 32, bias=torch.randn(40))
    layer = TritonQuantLinear.from_quantized(q)
    assert "triton int4" in layer.kernel and "triton int4" in repr(layer)
    x = torch.randn(3, 5, 96)
    assert _rel(layer(x), x @ _dense(q).t() + q.bias) < 5e-3


def test_weight_property_is_the_dequantized_weight_for_code_that_reads_it():
    """Model code that does ``F.linear(x, self.qkv.weight)`` must keep running after lowering."""
    torch.manual_seed(2)
    for bits in (4, 8):
        q = rtn_quantize(torch.randn(24, 64), bits, 32 if bits == 4 else 64)
        layer = TritonQuantLinear.from_quantized(q)
        assert layer.weight.shape == (24, 64)
        assert _rel(layer.weight.float(), _dense(q)) < 1e-3
    gated = TritonQuantLinear.gated_from_quantized(q, q)
    assert not hasattr(gated, "weight")  # gate and up rows interleaved: no single weight


def test_a_lowered_weight_read_for_f_linear_traces_back_to_the_layers_product():
    """lower-triton re-traces the model: ``F.linear(x, self.proj.weight, self.proj.bias)`` on a TritonQuantLinear
    must become its TritonMatMul (plus the bias), not the unpacking's shifts, which have no IR rule."""
    import torch.nn.functional as F

    from graphpress.frontends.torch_export import trace
    from graphpress.ir import GRAPHPRESS_DOMAIN

    class Reader(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = TritonQuantLinear.from_quantized(rtn_quantize(torch.randn(24, 64), 4, 32, bias=torch.randn(24)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.proj.weight, self.proj.bias)

    torch.manual_seed(3)
    model, x = Reader().eval(), torch.randn(2, 64)
    graph = trace(model, (x,))
    ops = [n.op for n in graph.nodes]
    assert "TritonMatMul" in ops and "Add" in ops and "DequantizeWeight" not in ops
    product = next(n for n in graph.nodes if n.op == "TritonMatMul" and n.domain == GRAPHPRESS_DOMAIN)
    assert product.attrs["glu"] == 0 and product.attrs["out_features"] == 24


def test_fused_gqa_qkv_returns_each_projection():
    torch.manual_seed(1)
    parts = [rtn_quantize(torch.randn(rows, 64), 4, 64) for rows in (64, 16, 16)]  # q, then one kv head each
    fused = TritonQuantLinear.from_quantized(parts)
    assert fused.split_sizes == [64, 16, 16] and "split_sizes" in repr(fused)
    x = torch.randn(2, 64)
    outputs = fused(x)
    assert [o.shape[-1] for o in outputs] == [64, 16, 16]
    for out, q in zip(outputs, parts):
        assert _rel(out, x @ _dense(q).t()) < 5e-3


def test_fusing_mismatched_projections_is_refused():
    with pytest.raises(BackendError, match="share bits, group"):
        TritonQuantLinear.from_quantized([rtn_quantize(torch.randn(8, 64), 4, 32), rtn_quantize(torch.randn(8, 64), 4, 64)])


def test_cpu_without_interpreter_falls_back_and_logs_once(monkeypatch, caplog):
    monkeypatch.setattr(linear_module, "_INTERPRETER", False)
    monkeypatch.setattr(linear_module, "_fallback_logged", set())
    torch.manual_seed(2)
    q = rtn_quantize(torch.randn(24, 80), 8, None)
    layer = TritonQuantLinear.from_quantized(q)
    assert layer.kernel.startswith("torch fallback")
    x = torch.randn(4, 80)
    with caplog.at_level(logging.INFO, logger="graphpress"):
        first = layer(x)
        layer(x)
    assert sum("using torch dequantize+matmul" in r.getMessage() for r in caplog.records) == 1
    assert _rel(first, x @ _dense(q).t()) < 1e-5


def test_lowering_a_llama_keeps_its_logits():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(3)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        before = model(ids).logits
        names = lower_linear_modules(model, quantizer=lambda lin: rtn_quantize(lin.weight.data, 8, None))
        after = model(ids).logits
    assert len(names) == 2 * 7 + 1 and "lm_head" in names
    assert isinstance(model.model.layers[0].mlp.down_proj, TritonQuantLinear)
    assert _rel(after, before) < 2e-2  # int8 per-channel RTN of every linear


def test_custom_op_compiles_without_graph_breaks():
    torch.manual_seed(4)
    fused = TritonQuantLinear.from_quantized([rtn_quantize(torch.randn(32, 64), 4, 32) for _ in range(2)])

    class GateUp(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = fused

        def forward(self, x):
            gate, up = self.proj(x)
            return torch.nn.functional.silu(gate) * up

    module = GateUp()
    x = torch.randn(3, 64)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), module(x), rtol=1e-5, atol=1e-5)


def test_kernel_names_the_path_per_width():
    int4 = TritonQuantLinear.from_quantized(rtn_quantize(torch.randn(16, 128), 4, 64))
    int8 = TritonQuantLinear.from_quantized(rtn_quantize(torch.randn(16, 128), 8, None))
    assert int4.kernel.startswith("triton int4 (paired-float16 gemv") and "swapped-operand" in int4.kernel
    assert int8.kernel.startswith("triton int8 (paired-float16 gemv") and "swapped-operand" not in int8.kernel
