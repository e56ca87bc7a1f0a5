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
