"""Tiny models with example inputs, for tests: Hugging Face architectures from small configs with random
weights, the CNNs of :mod:`.cnn_blocks`, and a Llama-2-7B-shaped model on the meta device.

Every builder seeds torch, so two calls give the same weights, and returns a :class:`ZooCase` holding the
model (eval mode) and the keyword inputs its ``forward`` takes. ``tiny_case("llama")`` is what tests use;
``tiny_case_names()`` lists the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .cnn_blocks import TinyMobileNetV2, TinyResNet, TinySegNet

__all__ = ["ZooCase", "tiny_case", "tiny_case_names", "meta_llama"]

_VOCAB, _BATCH, _SEQ = 128, 2, 8


@dataclass
class ZooCase:
    """A model and the inputs to call it with: ``model(**inputs)`` (a dict) or ``model(*inputs)``."""

    name: str
    model: nn.Module
    inputs: dict[str, torch.Tensor] | tuple[torch.Tensor, ...]
    call_kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self) -> Any:
        """The model's output on the example inputs (no grad), for comparing against a compressed copy."""
        with torch.no_grad():
            if isinstance(self.inputs, dict):
                return self.model(**self.inputs, **self.call_kwargs)
            return self.model(*self.inputs, **self.call_kwargs)


def _tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, _VOCAB, (_BATCH, _SEQ), generator=torch.Generator().manual_seed(seed))


def _llama() -> ZooCase:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=_VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return ZooCase("llama", LlamaForCausalLM(config), {"input_ids": _tokens()}, {"use_cache": False})


def _llama_tied() -> ZooCase:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=_VOCAB, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=6, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return ZooCase("llama_tied", LlamaForCausalLM(config), {"input_ids": _tokens()}, {"use_cache": False})


def _bert() -> ZooCase:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    mask = torch.ones(_BATCH, _SEQ, dtype=torch.long)
    mask[1, -3:] = 0  # one padded sequence, so the attention mask is really used
    return ZooCase("bert", BertModel(config), {"input_ids": _tokens(), "attention_mask": mask})


def _gpt2() -> ZooCase:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=_VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    return ZooCase("gpt2", GPT2LMHeadModel(config), {"input_ids": _tokens()}, {"use_cache": False})


def _vit() -> ZooCase:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64)
    return ZooCase("vit", ViTModel(config), {"pixel_values": torch.randn(1, 3, 32, 32)})


def _image() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    # Fresh BatchNorms are the identity (mean 0, var 1); random statistics make a wrong BN lowering visible.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model


_BUILDERS: dict[str, Callable[[], ZooCase]] = {
    "llama": _llama,
    "llama_tied": _llama_tied,
    "bert": _bert,
    "gpt2": _gpt2,
    "vit": _vit,
    "resnet": lambda: ZooCase("resnet", randomize_batchnorm(TinyResNet()), (_image(),)),
    "mobilenet": lambda: ZooCase("mobilenet", randomize_batchnorm(TinyMobileNetV2()), (_image(),)),
    "segnet": lambda: ZooCase("segnet", randomize_batchnorm(TinySegNet()), (_image(),)),
}


def tiny_case_names() -> list[str]:
    return list(_BUILDERS)


def tiny_case(name: str, seed: int = 0) -> ZooCase:
    """Build the named tiny model (eval mode, weights seeded by ``seed``) with its example inputs."""
    if name not in _BUILDERS:
        raise KeyError(f"no tiny model {name!r}; choose one of {', '.join(_BUILDERS)}")
    torch.manual_seed(seed)
    case = _BUILDERS[name]()
    case.model.eval()
    return case


def meta_llama(layers: int = 32, hidden: int = 4096, heads: int = 32, kv_heads: int = 32,
               intermediate: int = 11008, vocab: int = 32000, seq: int = 16) -> ZooCase:
    """A Llama-2-7B-shaped ``LlamaForCausalLM`` built on the meta device: shapes only, no weight memory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=4096)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    tokens = torch.zeros(1, seq, dtype=torch.long, device="meta")
    return ZooCase("meta_llama", model.eval(), {"input_ids": tokens}, {"use_cache": False})
