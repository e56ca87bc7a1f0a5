"""Shared pieces of the pruning tests: tiny models of the architectures issue 3 lists, and the acceptance
check (prune 30% of the prunable parameters, shapes unchanged, ONNX export of the result matches torch)."""

from __future__ import annotations

import sys

import pytest
import torch

from graphpress.testing.arch_zoo import arch_case, arch_case_names
from graphpress.testing.zoo import ZooCase, tiny_case
from graphpress.testing.zoo_checks import call_case as call
from graphpress.testing.zoo_checks import onnx_matches, optimize_kwargs

sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # the pass manager deep-copies graphs

_VOCAB = 128


def _tokens() -> torch.Tensor:
    return torch.randint(0, _VOCAB, (2, 8), generator=torch.Generator().manual_seed(1))


def _causal_lm(config_name: str, **extra) -> ZooCase:
    import transformers

    config = getattr(transformers, config_name)(vocab_size=_VOCAB, hidden_size=64, intermediate_size=96,
                                                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                                                **extra)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    return ZooCase(config_name, model, {"input_ids": _tokens()}, {"use_cache": False})


HF_EXTRA = {  # the other language models come from graphpress.testing.arch_zoo
    "gemma": lambda: _causal_lm("GemmaConfig", num_key_value_heads=2, head_dim=16),
}


def build_case(name: str) -> ZooCase:
    torch.manual_seed(0)
    if name in HF_EXTRA:
        return HF_EXTRA[name]()
    return arch_case(name) if name in arch_case_names() else tiny_case(name)


@pytest.fixture
def zoo():
    """The helpers above, as a fixture (pytest's importlib mode can't import conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(build=build_case, call=call, onnx_matches=onnx_matches, kwargs=optimize_kwargs)
