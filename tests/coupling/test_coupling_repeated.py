"""trace_repeated_blocks: two traced blocks plus IR clones give the same graph as tracing every block."""

from __future__ import annotations

import sys

import torch
import transformers

from graphpress.analysis.coupling import compute_coupling, format_groups
from graphpress.analysis.coupling.repeated_blocks import find_repeated_blocks, trace_repeated_blocks
from graphpress.backends.onnx.runtime import run_onnxruntime
from graphpress.frontends.torch_export import trace
from graphpress.ir import verify

sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))


def test_cloned_blocks_match_a_full_trace():
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=5,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    assert find_repeated_blocks(model)[0] == "model.layers"
    tokens = torch.randint(0, 64, (1, 8))
    full = trace(model, (tokens,), example_kwargs={"use_cache": False})
    cloned = trace_repeated_blocks(model, (tokens,), example_kwargs={"use_cache": False})
    verify(cloned)
    assert len(cloned.nodes) == len(full.nodes)
    assert {n.scope for n in cloned.nodes} == {n.scope for n in full.nodes}
    assert torch.equal(torch.as_tensor(run_onnxruntime(cloned, [tokens])[0]),
                       torch.as_tensor(run_onnxruntime(full, [tokens])[0]))
    text = format_groups(compute_coupling(cloned))
    assert text == format_groups(compute_coupling(full))
    assert "model.layers.4.mlp" in text and "query head" in text
