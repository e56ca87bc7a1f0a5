"""A tiny random Llama shared by the quantization tests (built fresh per test so in-place edits don't leak)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


@pytest.fixture()
def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture()
def tokens() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(0, 128, (6, 32))
