"""Acceptance (issue 2): torch -> IR -> ONNX -> onnxruntime matches the torch model on every tiny model.

Each case is traced by graphpress, written by graphpress' ONNX emitter and run in onnxruntime; the
outputs must match the eager torch model to a max relative error of 1e-4 (``max|a - e| / max|e|``).
A few models are also traced through the full core-aten decomposition, so both lowering paths are held
to the same bar.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.frontends.torch_export import trace
from graphpress.ir import verify
from graphpress.testing import tiny_case, tiny_case_names

TOLERANCE = 1e-4


def _reference_outputs(case, names: list[str]) -> list[torch.Tensor]:
    out = case.run()
    if isinstance(out, torch.Tensor):
        return [out]
    return [out[name] for name in names]


def _feed(case, graph) -> dict[str, torch.Tensor]:
    given = case.inputs if isinstance(case.inputs, dict) else dict(zip((v.name for v in graph.inputs), case.inputs))
    return {v.name: given[v.name] for v in graph.inputs}


def _max_relative_error(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    assert len(actual) == len(expected)
    worst = 0.0
    for a, e in zip(actual, expected):
        assert tuple(a.shape) == tuple(e.shape)
        worst = max(worst, ((a - e).abs().max() / e.abs().max()).item())
    return worst


@pytest.mark.parametrize("name", tiny_case_names())
def test_onnxruntime_matches_torch(name: str) -> None:
    case = tiny_case(name)
    graph = trace(case.model, case.inputs)
    verify(graph)
    outputs = run_onnxruntime(to_onnx(graph), _feed(case, graph))
    error = _max_relative_error(outputs, _reference_outputs(case, graph.metadata["output_names"]))
    assert error <= TOLERANCE, f"{name}: max relative error {error:.2e}"


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert"])
def test_decomposed_path_matches_torch(name: str) -> None:
    case = tiny_case(name)
    graph = trace(case.model, case.inputs, decompose=True)
    assert graph.metadata["decomposed"]
    outputs = run_onnxruntime(to_onnx(graph), _feed(case, graph))
    error = _max_relative_error(outputs, _reference_outputs(case, graph.metadata["output_names"]))
    assert error <= TOLERANCE, f"{name} (decomposed): max relative error {error:.2e}"


class _ElementwiseZoo(torch.nn.Module):
    """Unary ops with no ONNX op of their own (log1p, expm1, log2, log10, trunc) and the trigonometric family."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positive, unit = x.abs() + 0.5, torch.tanh(x) * 0.9
        parts = [torch.log1p(positive), torch.expm1(x), torch.log2(positive), torch.log10(positive),
                 torch.trunc(x * 3), torch.tan(unit), torch.asin(unit), torch.acos(unit), torch.atan(x),
                 torch.sinh(x), torch.cosh(x), torch.asinh(x), torch.acosh(positive + 1), torch.atanh(unit)]
        return torch.stack(parts)


def test_composite_unary_ops_match_torch() -> None:
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    graph = trace(_ElementwiseZoo(), (x,))
    got = run_onnxruntime(to_onnx(graph), (x,))[0]
    expected = _ElementwiseZoo()(x)
    assert torch.allclose(torch.as_tensor(got), expected, rtol=1e-5, atol=1e-5)


class _ComplexRotary(torch.nn.Module):
    """Rotary embedding in complex numbers, as Meta's reference Llama and transformers' Llama 4 write it."""

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        inverse = 1.0 / (10000 ** (torch.arange(0, x.shape[-1], 2, dtype=torch.float32) / x.shape[-1]))
        table = torch.polar(torch.ones(positions.shape[0], inverse.shape[0]), positions[:, None] * inverse) * 0.5
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * table[None, :, None, :]).flatten(3).type_as(x)


def test_complex_rotary_embedding_matches_torch() -> None:
    generator = torch.Generator().manual_seed(0)
    x, positions = torch.randn(2, 5, 3, 8, generator=generator), torch.arange(5, dtype=torch.float32) + 1.5
    graph = trace(_ComplexRotary(), (x, positions))
    assert graph.find("Cos") and graph.find("Sin")  # the table is computed in the graph, in real arithmetic
    got = run_onnxruntime(to_onnx(graph), (x, positions))[0]
    assert torch.allclose(torch.as_tensor(got), _ComplexRotary()(x, positions), rtol=1e-5, atol=1e-5)


def test_other_ops_on_complex_tensors_are_refused_by_name() -> None:
    from graphpress.errors import UnsupportedOpError

    class ComplexExp(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.view_as_real(torch.view_as_complex(x).exp())

    with pytest.raises(UnsupportedOpError, match="exp.*complex tensors"):
        trace(ComplexExp(), (torch.randn(3, 2),))


def test_scatter_matches_torch() -> None:
    class TopKScores(torch.nn.Module):  # Llama 4's router
        def forward(self, logits: torch.Tensor) -> torch.Tensor:
            top, index = torch.topk(logits, 2, dim=1)
            return torch.full_like(logits, float("-inf")).scatter(1, index, top).sigmoid()

    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    got = run_onnxruntime(to_onnx(trace(TopKScores(), (logits,))), (logits,))[0]
    assert torch.allclose(torch.as_tensor(got), TopKScores()(logits), atol=1e-6)


def test_max_and_min_over_a_dim_give_values_and_indices() -> None:
    class RouterScores(torch.nn.Module):  # gpt-oss's attention sink and PhiMoE's router reduce this way
        def forward(self, x: torch.Tensor):
            top, where = torch.max(x, dim=-1, keepdim=True)
            low, low_where = x.min(1)
            clipped = torch.max(torch.min(x, x.mean()), -x.abs())  # the two-tensor forms
            return (x - top).exp() + low.unsqueeze(-1) + clipped + x.max() - x.min(), where, low_where

    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    x[0, 3] = x[0, 5] = x[0].max() + 1  # a tie: torch and ONNX both name the first
    graph = trace(RouterScores(), (x,))
    got = [torch.as_tensor(t) for t in run_onnxruntime(to_onnx(graph), (x,))]
    want = RouterScores()(x)
    assert torch.allclose(got[0], want[0], atol=1e-6)
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert int(got[1][0, 0]) == 3


def test_variance_and_standard_deviation_match_torch() -> None:
    class HeadNorm(torch.nn.Module):  # xLSTM's multi-head LayerNorm takes the variance this way
        def forward(self, x: torch.Tensor):
            heads = x.reshape(2, 3, 4, 5)
            var, mean = torch.var_mean(heads, dim=-1, keepdim=True, correction=0)
            normed = (heads - mean) / torch.sqrt(var + 1e-5)
            return (normed.flatten(2), x.var(dim=(0, 2), unbiased=True), x.std(), torch.std_mean(x, 1)[0])

    x = torch.randn(2, 3, 20, generator=torch.Generator().manual_seed(0)) * 3 + 1
    got = [torch.as_tensor(t) for t in run_onnxruntime(to_onnx(trace(HeadNorm(), (x,))), (x,))]
    for g, w in zip(got, HeadNorm()(x)):
        assert g.shape == w.shape and torch.allclose(g, w, rtol=1e-5, atol=1e-5)


class _Norms(torch.nn.Module):
    """CUDA builds export ``F.rms_norm`` as ``_fused_rms_norm`` (DiffLlama's per-head norm), CPU ones as
    ``rms_norm``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(6) + 0.5)

    def forward(self, x: torch.Tensor):
        fused, rstd = torch.ops.aten._fused_rms_norm(x, [6], self.weight.to(x.dtype), 1e-6)
        return fused, rstd, torch.nn.functional.rms_norm(x, [4, 6], None, None)


def test_rms_norm_and_its_fused_form_match_torch() -> None:
    x = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0)) * 2
    norms = _Norms()
    got = run_onnxruntime(to_onnx(trace(norms, (x,))), (x,))
    for g, w in zip(got, norms(x)):
        assert g.shape == w.shape and torch.allclose(torch.as_tensor(g), w, rtol=1e-5, atol=1e-5)


def test_rms_norm_of_bfloat16_accumulates_in_float32() -> None:
    graph = trace(_Norms(), (torch.randn(3, 4, 6).to(torch.bfloat16),))
    means = graph.find("ReduceMean")
    assert means and all(n.outputs[0].dtype == torch.float32 for n in means)
    assert [v.dtype for v in graph.outputs] == [torch.bfloat16, torch.float32, torch.bfloat16]


class _Convolutions(nn.Module):
    """Every pre-dispatch convolution form: plain, named paddings ("same" with an even kernel pads unevenly,
    the odd one at the end) and transposed, in 1-D and 2-D."""

    def __init__(self) -> None:
        super().__init__()
        self.plain = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.same = nn.Conv2d(4, 4, 4, padding="same", dilation=2)
        self.valid = nn.Conv1d(4, 6, 3, padding="valid")
        self.up = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.same(self.plain(x))
        return self.up(y), self.valid(y.reshape(1, 4, -1))


def test_convolutions_lower_in_their_pre_dispatch_forms() -> None:
    torch.manual_seed(0)
    model, x = _Convolutions().eval(), torch.randn(1, 3, 16, 16)
    graph = trace(model, (x,), decompose=False)
    assert not graph.metadata["decomposed"]
    outputs = run_onnxruntime(to_onnx(graph), {graph.inputs[0].name: x})
    with torch.no_grad():
        assert _max_relative_error(outputs, list(model(x))) <= TOLERANCE


class _CheckedGather(nn.Module):
    """A run-time check on values, as Hugging Face's image-token count check exports: ``_is_all_true -> item
    -> _assert_scalar``; the size it reads is an unbacked symbol."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._check_tensor_all(x.abs().sum(-1) >= 0, lambda: "never fails")
        return x.flatten(1) * 2


def test_run_time_checks_are_dropped_before_decomposition() -> None:
    from graphpress.frontends.torch_export import _without_checks, export_program

    x = torch.randn(2, 3, 4)
    ep = _without_checks(export_program(_CheckedGather(), (x,), {}))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert not any("assert" in t or "is_all_true" in t or "item" in t for t in targets), targets
    assert torch.equal(ep.module()(x), x.flatten(1) * 2)
    graph = trace(_CheckedGather(), (x,), decompose=True)
    assert run_onnxruntime(to_onnx(graph), {graph.inputs[0].name: x})[0].shape == (2, 12)
