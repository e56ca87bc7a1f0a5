"""Linears whose weight is computed in forward from stored tensors (``weight_norm``, ``spectral_norm``, an
un-merged low-rank update ``w + B @ A``) prune like ordinary ones: the stored tensors are sliced, the
parametrized module keeps working at its new size, and the result runs like its graph and its ONNX export.
A weight that is not channel-separable (``orthogonal``, a triangular mask, one folded from the weights by
``fold-constants``) keeps its channels, and the pass names why."""

from __future__ import annotations

import copy
import io
import os
import tempfile
from typing import Callable

import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

import graphpress
from graphpress.api import _context, optimize_graph
from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.backends.torch_module import finalize_module
from graphpress.frontends.torch_export import trace
from graphpress.ir import Graph
from graphpress.testing.zoo import ZooCase
from graphpress.testing.zoo_checks import call_case, onnx_matches, optimize_kwargs

Wrap = Callable[[nn.Linear], nn.Linear]
WRAPS: dict[str, Wrap] = {
    "weight_norm": parametrizations.weight_norm,
    "weight_norm_dim1": lambda layer: parametrizations.weight_norm(layer, dim=1),
    "spectral_norm": parametrizations.spectral_norm,
}


class Sandwich(nn.Module):
    """A parametrized linear between two plain ones, so both its input and its output channels can shrink."""

    def __init__(self, wrap: Wrap, width: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.pre = nn.Linear(16, width)
        self.mid = wrap(nn.Linear(width, hidden))
        self.post = nn.Linear(hidden, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.relu(self.mid(torch.relu(self.pre(x)))))


class LowRank(nn.Module):
    """A linear with an un-merged low-rank update computed in forward (LoRA before merging), in two forms."""

    def __init__(self, form: str, width: int = 32, hidden: int = 64, rank: int = 4) -> None:
        super().__init__()
        self.form = form
        self.pre = nn.Linear(16, width)
        self.w = nn.Parameter(torch.randn(hidden, width) / width ** 0.5)
        self.A = nn.Parameter(torch.randn(rank, width))
        self.B = nn.Parameter(torch.randn(hidden, rank) * 0.1)
        self.bias = nn.Parameter(torch.randn(hidden))
        self.post = nn.Linear(hidden, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.pre(x))
        weight = self.w + self.B @ self.A
        if self.form == "linear":
            y = F.linear(h, weight, self.bias)
        else:  # addmm over flattened rows, sizes read from the tensors
            y = torch.addmm(self.bias, h.reshape(-1, h.shape[-1]), weight.t()).reshape(*h.shape[:-1], -1)
        return self.post(torch.relu(y))


class TwoBranches(nn.Module):
    """``layer`` (whose channels may have to stay) beside a plain MLP that can always be pruned."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.pre = nn.Linear(16, layer.in_features)
        self.layer = layer
        self.head = nn.Linear(layer.out_features, 8)
        self.up = nn.Linear(16, 64)
        self.down = nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.layer(torch.relu(self.pre(x))))) + self.down(torch.relu(self.up(x)))


class TriangularLinear(nn.Linear):
    """An autoregressive (masked) linear: only the lower triangle of the weight is used."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, torch.tril(self.weight), self.bias)


def _prune(model: nn.Module, x: torch.Tensor, pipeline: str = "prune-channels{ratio=0.3,recover=false}"):
    """Trace a copy, run ``pipeline`` (no trial runs: the coupling alone must be right); the last pass's
    stats, the pruned module and its graph."""
    graph = trace(copy.deepcopy(model), (x,))
    report = optimize_graph(graph, pipeline, _context((x,), None, None, None, True, None))
    return report.records[-1].stats, finalize_module(graph), graph


def _assert_runs_like_its_graph_and_export(pruned: nn.Module, graph: Graph, x: torch.Tensor) -> None:
    """The pruned module computes what its pruned graph computes in onnxruntime, and what the ONNX file
    graphpress exports from the pruned module computes."""
    with torch.no_grad():
        want = pruned(x)
    got = torch.as_tensor(run_onnxruntime(to_onnx(graph), (x,))[0])
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "pruned.onnx")
        graphpress.export_onnx(copy.deepcopy(pruned), path, example_inputs=(x,))
        exported = torch.as_tensor(run_onnxruntime(onnx.load(path), (x,))[0])
    assert torch.allclose(exported, want, atol=1e-5, rtol=1e-4), (exported - want).abs().max()


def _assert_state_dict_round_trip(pruned: nn.Module, fresh: nn.Module, x: torch.Tensor) -> None:
    """A model built at the pruned sizes (parametrized the same way) loads the pruned state_dict, saved and
    read back, and computes the same."""
    buffer = io.BytesIO()
    torch.save(pruned.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), pruned(x))


@pytest.mark.parametrize("kind", sorted(WRAPS))
def test_parametrized_linear_prunes_its_stored_tensors(kind: str) -> None:
    model, x = Sandwich(WRAPS[kind]).eval(), torch.randn(4, 16)
    stats, pruned, graph = _prune(model, x)
    assert stats["uncovered_ops"] == 0 and 0.25 <= stats["achieved_ratio"] <= 0.35
    mid = pruned.mid
    width, hidden = mid.in_features, mid.out_features
    assert width < 32 and hidden < 64  # both sides of the computed weight shrank
    assert mid.weight.shape == (hidden, width) and mid.bias.shape == (hidden,)
    assert pruned.pre.out_features == width and pruned.post.in_features == hidden
    stored = dict(mid.parametrizations.weight.named_parameters())
    stored.update(dict(mid.parametrizations.weight.named_buffers()))
    for name, tensor in stored.items():  # weight_norm's g and v, spectral_norm's weight and u, v vectors
        assert all(size in (1, width, hidden) for size in tensor.shape), (name, tensor.shape)
        assert tensor.numel() <= width * hidden
    _assert_runs_like_its_graph_and_export(pruned, graph, x)
    _assert_state_dict_round_trip(pruned, Sandwich(WRAPS[kind], width, hidden), x)


@pytest.mark.parametrize("form", ["linear", "addmm"])
def test_low_rank_update_slices_w_and_B_rows_and_A_columns(form: str) -> None:
    model, x = LowRank(form).eval(), torch.randn(2, 3, 16)
    stats, pruned, graph = _prune(model, x)
    assert stats["uncovered_ops"] == 0 and 0.25 <= stats["achieved_ratio"] <= 0.35
    hidden, width = pruned.w.shape
    assert hidden < 64 and width < 32
    assert pruned.B.shape == (hidden, 4) and pruned.A.shape == (4, width) and pruned.bias.shape == (hidden,)
    assert pruned.pre.out_features == width and pruned.post.in_features == hidden
    _assert_runs_like_its_graph_and_export(pruned, graph, x)


def test_optimize_leaves_the_users_parametrized_model_alone() -> None:
    model, x = Sandwich(parametrizations.weight_norm).eval(), torch.randn(4, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=(x,))
    assert pruned.mid.out_features < 64 and model.mid.out_features == 64
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _weight_normed_llama() -> ZooCase:
    import transformers

    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    for layer in model.model.layers:
        for name in ("gate_proj", "up_proj", "down_proj"):
            parametrizations.weight_norm(getattr(layer.mlp, name))
    tokens = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(1))
    return ZooCase("llama+weight_norm", model, {"input_ids": tokens}, {"use_cache": False})


def test_hugging_face_mlp_with_weight_norm_prunes_and_exports() -> None:
    case = _weight_normed_llama()
    pruned, report = graphpress.optimize(case.model, "prune-channels{ratio=0.3}", return_report=True,
                                         **optimize_kwargs(case))
    stats = report.records[-1].stats
    assert stats["uncovered_ops"] == 0 and 0.25 <= stats["achieved_ratio"] <= 0.35
    for layer in pruned.model.layers:
        mlp = layer.mlp
        assert mlp.gate_proj.out_features == mlp.up_proj.out_features == mlp.down_proj.in_features < 96
        v = mlp.down_proj.parametrizations.weight.original1
        assert v.shape == (mlp.down_proj.out_features, mlp.down_proj.in_features)
    assert onnx_matches(pruned, case) < 1e-5
    twin = copy.deepcopy(pruned)
    twin.load_state_dict(pruned.state_dict())
    assert torch.equal(call_case(twin, case)[0], call_case(pruned, case)[0])


@pytest.mark.parametrize("square", [False, True], ids=["householder", "matrix_exp"])
def test_orthogonal_linear_stays_whole_and_the_pass_says_why(square: bool) -> None:
    model = TwoBranches(parametrizations.orthogonal(nn.Linear(32, 32 if square else 64))).eval()
    x = torch.randn(4, 16)
    stats, pruned, graph = _prune(model, x)
    op = "linalg_matrix_exp" if square else "linalg_householder_product"
    assert stats["uncovered_ops"] == 1 and op in stats["frozen_by"] and "computed once from" in stats["frozen_by"]
    assert "layer.parametrizations.weight.original" in stats["frozen_by"]
    assert pruned.layer.weight.shape == model.layer.weight.shape and pruned.pre.out_features == 32
    assert pruned.up.out_features < 64 and stats["achieved_ratio"] > 0.2  # the other branch still prunes
    weight = pruned.layer.weight
    gram = weight.T @ weight if weight.shape[0] >= weight.shape[1] else weight @ weight.T
    assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-5)  # still orthogonal
    _assert_runs_like_its_graph_and_export(pruned, graph, x)


def test_weight_whose_channels_an_op_mixes_stays_whole_and_names_that_op() -> None:
    model, x = TwoBranches(TriangularLinear(32, 64)).eval(), torch.randn(4, 16)
    stats, pruned, graph = _prune(model, x)
    assert "weight computed by Where, which does not keep its channels apart" in stats["frozen_by"]
    assert pruned.layer.weight.shape == (64, 32) and pruned.pre.out_features == 32
    assert pruned.up.out_features < 64
    _assert_runs_like_its_graph_and_export(pruned, graph, x)


def test_weight_folded_from_parameters_is_not_pruned_apart_from_the_model() -> None:
    """fold-constants precomputes weight_norm's weight from the parameters the model keeps recomputing it
    from: pruning must leave it (named) rather than slice a copy the model never reads."""
    model = TwoBranches(parametrizations.weight_norm(nn.Linear(32, 64))).eval()
    x = torch.randn(4, 16)
    stats, pruned, graph = _prune(model, x, "fold-constants,prune-channels{ratio=0.3,recover=false}")
    assert "computed once from layer.parametrizations.weight" in stats["frozen_by"]
    assert pruned.layer.out_features == 64 and pruned.up.out_features < 64
    _assert_runs_like_its_graph_and_export(pruned, graph, x)
