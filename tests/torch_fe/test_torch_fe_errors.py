"""Failures say what went wrong and where: unknown ops name the aten op and the module path, export
failures carry torch's first line and a hint. Data-dependent models are refused here with
``specialise_values=False``; by default they trace (test_torch_fe_example_values.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphpress.errors import DataDependentError, FrontendError, UnsupportedOpError
from graphpress.frontends.torch_export import export_onnx, trace


class _Spectral(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x).abs()


class _WithSpectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.spectrum = _Spectral()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spectrum(self.proj(x))


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x


def test_unknown_op_names_op_and_module() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        trace(_WithSpectral(), (torch.randn(2, 8),))
    message = str(info.value)
    assert "fft" in message and "spectrum" in message and "lowers" in message  # an FFT makes complex values


def test_data_dependent_control_flow_is_explained() -> None:
    with pytest.raises(DataDependentError) as info:
        trace(_DataDependent(), (torch.randn(4),), specialise_values=False)
    message = str(info.value)
    assert "torch.export could not trace _DataDependent" in message
    assert "data-dependent control flow" in message and "test_torch_fe_errors.py" in message



class _SizeFromValues(nn.Module):
    """A length read from the data, then a branch on the size it gives (Mistral-3's and Qwen2-VL's image sizes):
    torch's guard error names no frame in its text."""

    def forward(self, x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        rows = x[: (sizes[0, 0] * sizes[0, 1]).item()]
        if rows.shape[0] > 1:
            return rows * 2
        return rows


def test_data_dependent_guard_names_the_model_line_from_the_traceback() -> None:
    with pytest.raises(FrontendError) as info:
        trace(_SizeFromValues(), (torch.randn(4, 6), torch.tensor([[1, 2], [2, 2]])), specialise_values=False)
    message = str(info.value)  # said "at an unknown location" before
    assert "unknown location" not in message and "test_torch_fe_errors.py" in message
    assert "computed from a tensor's values" in message

class _GroupsBySize(nn.Module):
    """Sizes read back from the data, as JetMoE's router does (``expert_size.tolist()``, then a split)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = (x > 0).long().sum(0).tolist()
        return torch.cat([part.sum(0, keepdim=True) for part in x.flatten().split(sizes + [x.numel() - sum(sizes)])])


def test_values_read_into_python_are_explained() -> None:
    with pytest.raises(DataDependentError) as info:
        trace(_GroupsBySize(), (torch.randn(4, 3),), specialise_values=False)
    message = str(info.value)
    assert "depend on the data" in message and "specialise_values=True" in message


def test_never_decomposing_refuses_ops_without_rules() -> None:
    flat = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())  # aten.flatten.using_ints: only decomposition lowers it
    with pytest.raises(UnsupportedOpError, match="flatten"):
        trace(flat, (torch.randn(1, 3, 8, 8),), decompose=False)
    assert trace(flat, (torch.randn(1, 3, 8, 8),)).find("Conv")


def test_export_onnx_needs_inputs(tmp_path) -> None:
    with pytest.raises(FrontendError, match="example inputs"):
        export_onnx(nn.Linear(2, 2), tmp_path / "m.onnx")


class _RescalesOnce(nn.Module):
    """Finishes initialising in its first call, as RWKV does: halves its weight once, then sets a flag."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.rescaled = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rescaled:
            with torch.no_grad():
                self.proj.weight.div_(2)
            self.rescaled = True
        return self.proj(x)


class _CountsCalls(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.proj(x)


def test_a_model_that_initialises_in_its_first_call_traces_after_one_call() -> None:
    model = _RescalesOnce().eval()
    x = torch.randn(2, 8)
    graph = trace(model, (x,))
    assert graph.metadata["warmed_up"]
    assert not model.rescaled  # the warm-up call ran on the traced copy, not on the user's model
    traced = graph.module
    assert traced.rescaled and torch.allclose(traced.proj.weight, model.proj.weight / 2)
    assert torch.allclose(traced(x), model(x))  # the user's first call rescales the same way


def test_state_written_in_every_call_is_named() -> None:
    from graphpress.errors import StateMutationError

    with pytest.raises(StateMutationError) as info:
        trace(_CountsCalls().eval(), (torch.randn(2, 8),))
    assert info.value.targets == ["calls"]
    assert "calls" in str(info.value) and "evaluation mode" in str(info.value)
