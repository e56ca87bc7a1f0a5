"""Shared fixtures of the eval tests: a tiny random Llama and a character-level tokenizer."""

from __future__ import annotations

import pytest
import torch


class CharTokenizer:
    """Tokenizes text into byte values; enough to exercise the corpus split without any model files."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(text.encode("utf-8"))}


@pytest.fixture()
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()
