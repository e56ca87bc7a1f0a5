"""Shared fixtures of the sparsity tests: a tiny random Llama and calibration tokens."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def make_tiny_llama(hidden: int = 64, intermediate: int = 128, layers: int = 2) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=128, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def make_llama():
    """The factory itself, for tests that need another size (pytest's importlib mode can't import conftest)."""
    return make_tiny_llama


@pytest.fixture
def tiny_llama() -> LlamaForCausalLM:
    return make_tiny_llama()


@pytest.fixture
def calibration_tokens() -> torch.Tensor:
    return torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
