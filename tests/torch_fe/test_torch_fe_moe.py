"""The torch frontend on mixture-of-experts models: the aten.topk rule, and the tracing-time dense
substitution of fused experts (same numbers as the model's own sparse forwards, applied only while tracing)."""

from __future__ import annotations

import inspect
import os

import onnx
import pytest
import torch

import graphpress
from graphpress.backends.onnx.runtime import run_onnxruntime
from graphpress.frontends.torch_export import trace
from graphpress.frontends.torch_moe import dense_experts_forward, is_fused_experts, routing_matrix

transformers = pytest.importorskip("transformers")


def tiny_mixtral() -> torch.nn.Module:
    config = transformers.MixtralConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                        num_local_experts=4, num_experts_per_tok=2)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


class _TopK(torch.nn.Module):
    def __init__(self, k: int, dim: int, largest: bool):
        super().__init__()
        self.k, self.dim, self.largest = k, dim, largest

    def forward(self, x: torch.Tensor):
        values, indices = torch.topk(x * 2.0, self.k, dim=self.dim, largest=self.largest)
        return values, indices


@pytest.mark.parametrize("dim,largest", [(-1, True), (1, False)])
def test_topk_lowers_to_one_onnx_topk_with_values_and_indices(dim, largest, tmp_path) -> None:
    module = _TopK(3, dim, largest)
    x = torch.randperm(2 * 5 * 6).reshape(2, 5, 6).float()  # distinct values: no ties to break
    graph = trace(module, (x,))
    (node,) = graph.find("TopK")
    assert node.attrs["axis"] == dim % 3 and node.attrs["largest"] == int(largest)
    assert node.input(1).param.data.tolist() == [3]
    values, indices = node.outputs
    want_values, want_indices = module(x)
    assert values.shape == tuple(want_values.shape) and values.dtype == torch.float32
    assert indices.shape == tuple(want_indices.shape) and indices.dtype == torch.int64
    path = graphpress.export_onnx(module, os.path.join(tmp_path, "topk.onnx"), (x,))
    got_values, got_indices = run_onnxruntime(onnx.load(path), [x])
    assert torch.equal(torch.as_tensor(got_values), want_values)
    assert torch.equal(torch.as_tensor(got_indices), want_indices)


def test_routing_matrix_weighs_picked_experts_and_ignores_out_of_range_indices() -> None:
    index = torch.tensor([[0, 2], [3, 4]])  # 4 = an expert-parallel sentinel: picks nothing
    weights = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    assert torch.equal(routing_matrix(index, weights, 4, torch.float32),
                       torch.tensor([[0.75, 0.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.5]]))


def _gpt_oss_experts() -> torch.nn.Module:
    # transposed [E, H, 2I] storage, biases, interleaved gate/up with the model's own clamped gate
    config = transformers.GptOssConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                                       num_experts_per_tok=2, head_dim=8)
    return transformers.AutoModelForCausalLM.from_config(config).model.layers[0].mlp.experts


@pytest.mark.parametrize("model", ["mixtral", "gpt_oss"])
@pytest.mark.parametrize("implementation", ["eager", "grouped_mm", "batched_mm"])
def test_dense_experts_forward_matches_the_models_own_forward(model, implementation) -> None:
    experts = tiny_mixtral().model.layers[0].mlp.experts if model == "mixtral" else _gpt_oss_experts()
    assert is_fused_experts(experts)
    for parameter in experts.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    experts.config._experts_implementation = implementation
    tokens = torch.randn(10, 32)
    scores = torch.randn(10, 4).softmax(-1)
    weights, index = scores.topk(2, dim=-1)
    with torch.no_grad():
        want = experts(tokens, index, weights)
        got = dense_experts_forward(experts, tokens, index, weights)
        by_name = dense_experts_forward(experts, hidden_states=tokens, **dict(zip(
            list(inspect.signature(experts.forward).parameters)[1:3], (index, weights))))
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(by_name, got)


def test_substitution_lasts_only_for_the_trace() -> None:
    model = tiny_mixtral()
    tokens = torch.randint(0, 64, (1, 6))
    graph = trace(model, {"input_ids": tokens})
    assert graph.metadata["traced_substitutions"] == ["model.layers.0.mlp.experts"]
    for module in (model.model.layers[0].mlp.experts, graph.module.model.layers[0].mlp.experts):
        assert "forward" not in module.__dict__  # the class's own (sparse) forward again
    assert len(graph.find("TopK")) == 1 and not graph.find("NonZero")
    assert not is_fused_experts(model.model.layers[0].self_attn.q_proj)


def test_traced_moe_model_exports_to_onnx_that_matches_torch(tmp_path) -> None:
    model = tiny_mixtral()
    tokens = torch.randint(0, 64, (2, 7))
    path = graphpress.export_onnx(model, os.path.join(tmp_path, "moe.onnx"), {"input_ids": tokens})
    got = torch.as_tensor(run_onnxruntime(onnx.load(path), [tokens])[0])
    with torch.no_grad():
        want = model(input_ids=tokens, use_cache=False).logits
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_sort_and_argsort_match_torch() -> None:
    from graphpress.backends.onnx import to_onnx

    class Shuffle(torch.nn.Module):  # ViT-MAE's patch shuffle: argsort of noise, then a gather
        def forward(self, x: torch.Tensor, noise: torch.Tensor):
            order = torch.argsort(noise, dim=1)
            values, _ = torch.sort(noise, dim=-1, descending=True)
            return torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1])), values

    x, noise = torch.randn(2, 6, 4), torch.rand(2, 6, generator=torch.Generator().manual_seed(0))
    got = run_onnxruntime(to_onnx(trace(Shuffle(), (x, noise))), (x, noise))
    for g, w in zip(got, Shuffle()(x, noise)):
        assert torch.allclose(torch.as_tensor(g), w)
