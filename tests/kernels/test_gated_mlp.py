"""Gated MLPs as one gate-up product with SiLU in the kernel's epilogue (backends/gated_mlp.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("triton")

from graphpress.backends.gated_mlp import GatedMLP, gated_mlp_layout, install_gated_mlps  # noqa: E402
from graphpress.backends.triton import TritonQuantLinear, lower_linear_modules, rtn_quantize  # noqa: E402
from graphpress.backends.triton.configs import LaunchConfig  # noqa: E402
from graphpress.backends.triton.layout import dequantize_kernel_weights  # noqa: E402
from graphpress.backends.triton.ops import _takes_paired_gemv, interpreting, launch_quant_matmul  # noqa: E402
from graphpress.errors import BackendError  # noqa: E402

if not interpreting():
    pytest.skip("these tests run the kernels under TRITON_INTERPRET=1", allow_module_level=True)


class _GeluGated(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        return self.down(F.gelu(self.gate(x)) * self.up(x))


class _TanhGeluGated(_GeluGated):
    def forward(self, x):
        return self.down(F.gelu(self.gate(x), approximate="tanh") * self.up(x))


class _SiluGatedWithDropout(_GeluGated):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return self.down(self.drop(F.silu(self.gate(x)) * self.up(x)))


class _SiluGatedReordered(_GeluGated):
    def forward(self, x):
        return self.down(self.up(x) * F.silu(self.gate(x)))


class _Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 8)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _llama_mlp():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    return LlamaMLP(LlamaConfig(hidden_size=64, intermediate_size=128, hidden_act="silu"))


def test_layout_accepts_exactly_the_silu_gated_product():
    assert gated_mlp_layout(_llama_mlp()) == ("gate_proj", "up_proj", "down_proj", "silu")
    assert gated_mlp_layout(_SiluGatedReordered()) == ("gate", "up", "down", "silu")
    assert gated_mlp_layout(_GeluGated()) is None  # exact GELU is neither SiLU nor tanh-GELU: checked numerically
    assert gated_mlp_layout(_TanhGeluGated()) == ("gate", "up", "down", "gelu_tanh")
    assert gated_mlp_layout(_SiluGatedWithDropout()) is None  # one op more than the pattern
    assert gated_mlp_layout(_Plain()) is None


def _gated_reference(x, gate_q, up_q, activation="silu"):
    gate = x.float() @ _dense(gate_q)
    act = F.silu(gate) if activation == "silu" else F.gelu(gate, approximate="tanh")
    return act * (x.float() @ _dense(up_q))


def _dense(q):
    return dequantize_kernel_weights(TritonQuantLinear.from_quantized(q).kernel_weights())


@pytest.mark.parametrize("split, activation, bits", [(1, "silu", 4), (3, "silu", 4), (2, "gelu_tanh", 4),
                                                     (2, "silu", 8)])
def test_kernel_epilogue_applies_the_activation_to_interleaved_pairs(split, activation, bits):
    torch.manual_seed(split)
    gate_q, up_q = rtn_quantize(torch.randn(48, 384), bits, 128), rtn_quantize(torch.randn(48, 384), bits, 128)
    layer = TritonQuantLinear.gated_from_quantized(gate_q, up_q, activation=activation)
    assert layer.out_features == 48 and layer.gated == activation and f"gated={activation}" in repr(layer)
    x = (torch.randn(1, 384) + 0.1).bfloat16()
    config = LaunchConfig(block_m=1, block_n=32, block_k=128, split_k=split, num_warps=2, num_stages=1)
    glu = 1 if activation == "silu" else 2
    assert _takes_paired_gemv(x, layer.kernel_weights(), config)  # so the epilogue runs in the kernel
    out = launch_quant_matmul(x, layer.kernel_weights(), config, glu=glu)  # the batch-1 kernel's epilogue
    reference = _gated_reference(x, gate_q, up_q, activation)
    assert out.shape == (1, 48)
    assert float((out.float() - reference).norm() / reference.norm()) < 1e-2


def test_gated_layer_with_bias_and_several_rows_takes_the_torch_epilogue():
    torch.manual_seed(4)
    gate_q = rtn_quantize(torch.randn(40, 96), 4, 32, bias=torch.randn(40))
    up_q = rtn_quantize(torch.randn(40, 96), 4, 32)
    layer = TritonQuantLinear.gated_from_quantized(gate_q, up_q)
    x = torch.randn(2, 3, 96)
    reference = F.silu(x @ _dense(gate_q) + gate_q.bias) * (x @ _dense(up_q))
    got = layer(x)
    assert got.shape == (2, 3, 40)
    assert float((got - reference).norm() / reference.norm()) < 5e-3


def test_a_gate_up_with_bias_is_not_chained_to_its_down_projection():
    """With a bias the activation runs as its own kernel after the gate-up product, so the down product
    does not follow a graphpress kernel and stays an ordinary launch."""
    from graphpress.backends.triton import chain_products

    torch.manual_seed(0)
    gate, up = rtn_quantize(torch.randn(32, 64), 4, 32), rtn_quantize(torch.randn(32, 64), 4, 32)
    down = TritonQuantLinear.from_quantized(rtn_quantize(torch.randn(64, 32), 4, 32))
    plain = GatedMLP(TritonQuantLinear.gated_from_quantized(gate, up), down)
    assert chain_products(nn.Sequential(plain)) == ["0.down"] and down.follows_product
    gate.bias = torch.randn(32)
    up.bias = torch.randn(32)
    biased_down = TritonQuantLinear.from_quantized(rtn_quantize(torch.randn(64, 32), 4, 32))
    biased = GatedMLP(TritonQuantLinear.gated_from_quantized(gate, up), biased_down)
    assert biased.gate_up.bias is not None
    assert chain_products(biased) == [] and not biased_down.follows_product


def test_gate_and_up_must_match():
    with pytest.raises(BackendError, match="share"):
        TritonQuantLinear.gated_from_quantized(rtn_quantize(torch.randn(8, 64), 4, 32),
                                               rtn_quantize(torch.randn(16, 64), 4, 32))


@pytest.mark.parametrize("family, activation", [("Llama", "silu"), ("Gemma", "gelu_tanh")])
def test_installed_gated_mlps_keep_the_model_output(family, activation):
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, f"{family}Config")(
        vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=32, pad_token_id=0)
    model_class = getattr(transformers, f"{family}ForCausalLM")
    model = model_class(config).eval()
    quantize = lambda linear: rtn_quantize(linear.weight.data, 4, 32)  # noqa: E731
    tokens = torch.randint(0, 97, (1, 5))
    one_for_one = model_class(config).eval()
    one_for_one.load_state_dict(model.state_dict())
    lower_linear_modules(one_for_one, quantizer=quantize)
    replaced = install_gated_mlps(model, lambda g, u, act: TritonQuantLinear.gated_from_quantized(
        quantize(g), quantize(u), activation=act))
    assert replaced == ["model.layers.0.mlp", "model.layers.1.mlp"]
    assert isinstance(model.model.layers[0].mlp, GatedMLP) and model.model.layers[0].mlp.gate_up.gated == activation
    lower_linear_modules(model, quantizer=quantize)
    chained = [name for name, m in model.named_modules() if getattr(m, "follows_product", False)]
    assert chained == ["model.layers.0.mlp.down", "model.layers.1.mlp.down"]  # nothing runs between the two
    assert not any(getattr(m, "follows_product", False) for m in one_for_one.modules())
    with torch.no_grad():
        expected = one_for_one(tokens).logits
        got = model(tokens).logits
    assert float((got - expected).norm() / expected.norm()) < 1e-4


def _quantized_llama(monkeypatch, layers: int, passes: str = "quantize{bits=4,group=64}"):
    """A small Llama through ``passes`` (quantize by default), with lower-triton's device check pointed at
    "cuda" so that its GPU path runs here on the interpreter; returns the model, its example ids and kwargs."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import graphpress
    from graphpress.passes import lower_triton

    monkeypatch.setattr(lower_triton, "_device_of", lambda module: "cuda")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    ids = torch.randint(0, 128, (1, 6))
    kw = {"use_cache": False}
    quantized = graphpress.optimize(LlamaForCausalLM(config).eval(), passes, example_inputs=(ids,), example_kwargs=kw)
    return quantized, ids, kw


def test_lower_triton_pass_installs_gated_mlps_and_retraces(monkeypatch):
    """The pass's GPU path, run on the interpreter: the model is re-traced (its kernel calls become
    ``graphpress::TritonMatMul`` layers) and its outputs stay those of the one-for-one lowering."""
    import copy

    import graphpress

    quantized, ids, kw = _quantized_llama(monkeypatch, layers=2)
    plain = graphpress.optimize(copy.deepcopy(quantized), "lower-triton{gated_mlp=false}", example_inputs=(ids,),
                                example_kwargs=kw)
    gated, report = graphpress.optimize(quantized, "lower-triton", example_inputs=(ids,), example_kwargs=kw,
                                        return_report=True)
    record = report.records[-1]
    assert record.stats == {"lowered": 14, "gated_mlps": 2, "chained": 2}
    assert record.error_vs_previous < 5e-3
    layers = {layer.scope: layer for layer in report.layers_after}
    assert layers["model.layers.0.mlp.gate_up"].op == "TritonMatMul"
    assert layers["model.layers.0.mlp.gate_up"].out_features == 512  # gate and up rows, interleaved
    assert isinstance(plain.model.layers[0].mlp.down_proj, TritonQuantLinear)
    with torch.no_grad():
        for tokens in (ids, ids[:, :1]):
            expected, got = plain(tokens, **kw).logits, gated(tokens, **kw).logits
            assert float((got - expected).norm() / expected.norm()) < 1e-4


def test_projections_fused_before_quantize_lower_to_one_split_product_and_a_gated_mlp(monkeypatch):
    """The compiler order fuse-qkv, fuse-gate-up, quantize, lower-triton: q/k/v become one Triton product with
    split outputs, and the fused gate/up quantized layer is taken apart into a GatedMLP's interleaved gate-up
    product; the outputs are those of the unfused pipeline."""
    import copy

    import graphpress

    quantized, ids, kw = _quantized_llama(monkeypatch, layers=2)
    fused_quantized, _, _ = _quantized_llama(monkeypatch, layers=2,
                                             passes="fuse-qkv,fuse-gate-up,quantize{bits=4,group=64}")
    plain = graphpress.optimize(copy.deepcopy(quantized), "lower-triton", example_inputs=(ids,), example_kwargs=kw)
    lowered, report = graphpress.optimize(fused_quantized, "lower-triton", example_inputs=(ids,), example_kwargs=kw,
                                          return_report=True)
    assert report.records[-1].stats == {"lowered": 10, "gated_mlps": 2, "chained": 2}
    attn = lowered.model.layers[0].self_attn
    assert isinstance(attn.fused_q_proj_k_proj_v_proj, TritonQuantLinear)
    assert attn.fused_q_proj_k_proj_v_proj.split_sizes == [128, 64, 64] and attn.k_proj.fused is attn.fused_q_proj_k_proj_v_proj
    assert isinstance(lowered.model.layers[0].mlp, GatedMLP)
    with torch.no_grad():
        for tokens in (ids, ids[:, :1]):
            expected, got = plain(tokens, **kw).logits, lowered(tokens, **kw).logits
            assert float((got - expected).norm() / expected.norm()) < 1e-4


def test_a_lowered_model_refuses_onnx_export_with_the_way_out(monkeypatch):
    import graphpress
    from graphpress.backends.onnx import to_onnx
    from graphpress.frontends.torch_export import trace

    quantized, ids, kw = _quantized_llama(monkeypatch, layers=1)
    lowered = graphpress.optimize(quantized, "lower-triton", example_inputs=(ids,), example_kwargs=kw)
    with pytest.raises(BackendError, match="export the model to ONNX before lower-triton"):
        to_onnx(trace(lowered, (ids,), example_kwargs=kw))
