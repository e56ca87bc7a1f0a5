"""Fixtures for the merging tests: tiny checkpoint folders written to tmp dirs.

Two kinds: real (tiny random Llama models saved with ``save_pretrained``, with a word-level
tokenizer) for end-to-end behaviour, and hand-made (a config plus a few named tensors) where a test
needs values it can compute by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel

TINY_LLAMA = dict(
    vocab_size=32,
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
)
VOCABULARY = {f"tok{index}": index for index in range(TINY_LLAMA["vocab_size"])}


def write_tokenizer(folder: Path, vocabulary: dict[str, int]) -> None:
    Tokenizer(WordLevel(vocabulary, unk_token="tok0")).save(str(folder / "tokenizer.json"))


@pytest.fixture
def make_llama(tmp_path: Path) -> Callable[..., Path]:
    """``make_llama(name, seed, **config_overrides)`` saves a tiny random Llama folder and returns it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def make(name: str, seed: int, vocabulary: dict[str, int] = VOCABULARY, **overrides) -> Path:
        torch.manual_seed(seed)
        folder = tmp_path / name
        LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, **overrides})).save_pretrained(folder)
        write_tokenizer(folder, vocabulary)
        return folder

    return make


@pytest.fixture
def make_tensor_folder(tmp_path: Path) -> Callable[..., Path]:
    """``make_tensor_folder(name, {tensor name: tensor})``: a minimal checkpoint with exactly these tensors."""

    def make(name: str, tensors: dict[str, torch.Tensor], model_type: str = "llama") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(folder / "model.safetensors"))
        return folder

    return make
