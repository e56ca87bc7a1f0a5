"""A quantized Hugging Face model survives save_pretrained + load_quantized bit for bit."""

from __future__ import annotations

import torch

from graphpress.quantization import QuantizedLinear, load_quantized, quantize_model


def test_save_pretrained_folder_loads_back(tiny_llama, tokens, tmp_path):
    dense_bytes = sum(p.numel() * 4 for p in tiny_llama.parameters())
    quantize_model(tiny_llama, bits=3, group=32, method="gptq", calibration=tokens)
    tiny_llama.save_pretrained(tmp_path)
    loaded = load_quantized(tmp_path)
    assert isinstance(loaded.model.layers[1].mlp.down_proj, QuantizedLinear)
    assert loaded.model.layers[1].mlp.down_proj.bits == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens).logits, tiny_llama(tokens).logits)
    on_disk = (tmp_path / "model.safetensors").stat().st_size
    assert on_disk < 0.6 * dense_bytes  # embeddings stay fp32; linears shrink to ~0.16


def test_projections_fused_before_quantizing_save_and_load_fused(tmp_path):
    """fuse-qkv, fuse-gate-up, quantize: the saved config records each fused layer's projections, and
    load_quantized installs the same fusion in the fresh model before the fused weights load."""
    import graphpress
    from graphpress.backends.fused_linear import SiblingSlice, unfuse_linears
    from graphpress.testing.zoo import tiny_case

    case = tiny_case("llama")
    model = graphpress.optimize(case.model, "fuse-qkv,fuse-gate-up,quantize{bits=4,group=32}",
                                example_inputs=case.inputs, example_kwargs=case.call_kwargs)
    model.save_pretrained(tmp_path)
    loaded = load_quantized(tmp_path)
    attn = loaded.model.layers[0].self_attn
    assert isinstance(attn.v_proj, SiblingSlice) and attn.v_proj.fused is attn.fused_q_proj_k_proj_v_proj
    assert attn.fused_q_proj_k_proj_v_proj.split_sizes == [64, 32, 32]
    with torch.no_grad():
        assert torch.equal(loaded(**case.inputs, **case.call_kwargs).logits,
                           model(**case.inputs, **case.call_kwargs).logits)

    unfuse_linears(model)  # the saved layout follows: one quantized layer per projection again
    model.save_pretrained(tmp_path / "unfused")
    reloaded = load_quantized(tmp_path / "unfused")
    assert isinstance(reloaded.model.layers[0].self_attn.v_proj, QuantizedLinear)
    with torch.no_grad():
        assert torch.equal(reloaded(**case.inputs, **case.call_kwargs).logits,
                           model(**case.inputs, **case.call_kwargs).logits)
