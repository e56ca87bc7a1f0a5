"""Shared pieces of the pruning tests: tiny models of the architectures issue 3 lists, and the acceptance
check (prune 30% of the prunable parameters, shapes unchanged, ONNX export of the result matches torch)."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest
import torch

from graphpress.testing.zoo import ZooCase, tiny_case

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


HF_EXTRA = {
    "mistral": lambda: _causal_lm("MistralConfig", num_key_value_heads=2),
    "qwen2": lambda: _causal_lm("Qwen2Config", num_key_value_heads=2),
    "qwen3": lambda: _causal_lm("Qwen3Config", num_key_value_heads=2, head_dim=16),
    "phi3": lambda: _causal_lm("Phi3Config", num_key_value_heads=2, pad_token_id=0),
    "gemma": lambda: _causal_lm("GemmaConfig", num_key_value_heads=2, head_dim=16),
    "mixtral": lambda: _causal_lm("MixtralConfig", num_key_value_heads=2, num_local_experts=4,
                                  num_experts_per_tok=2),
}


def build_case(name: str) -> ZooCase:
    torch.manual_seed(0)
    return HF_EXTRA[name]() if name in HF_EXTRA else tiny_case(name)


def call(model: torch.nn.Module, case: ZooCase):
    from graphpress.backends.evaluate import flatten_outputs

    with torch.no_grad():
        if isinstance(case.inputs, dict):
            return flatten_outputs(model(**case.inputs, **case.call_kwargs))
        return flatten_outputs(model(*case.inputs))


def optimize_kwargs(case: ZooCase) -> dict:
    if isinstance(case.inputs, dict):
        return {"example_inputs": (), "example_kwargs": {**case.inputs, **case.call_kwargs}}
    return {"example_inputs": case.inputs}


def onnx_matches(model: torch.nn.Module, case: ZooCase) -> float:
    """Export ``model`` through graphpress, run it in onnxruntime; the relative error of the first output."""
    import graphpress
    from graphpress.backends.onnx.runtime import run_onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        kwargs = optimize_kwargs(case)
        graphpress.export_onnx(model, path, kwargs["example_inputs"], example_kwargs=kwargs.get("example_kwargs"))
        import onnx

        proto = onnx.load(path)
        inputs = case.inputs if isinstance(case.inputs, dict) else list(case.inputs)
        if isinstance(inputs, dict):
            names = [i.name for i in proto.graph.input]
            inputs = {k: v for k, v in inputs.items() if k in names}
        got = torch.as_tensor(run_onnxruntime(proto, inputs)[0]).float()
    want = call(model, case)[0].float()
    return float((got - want).abs().max() / want.abs().max())


@pytest.fixture
def zoo():
    """The helpers above, as a fixture (pytest's importlib mode can't import conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(build=build_case, call=call, onnx_matches=onnx_matches, kwargs=optimize_kwargs)
