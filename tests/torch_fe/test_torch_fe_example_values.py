"""Models whose shapes or branches come from tensor values trace with those values taken from the example input
(``trace(specialise_values=None)``), say where, and refuse only when asked to."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import graphpress
from graphpress.backends.onnx import save_onnx
from graphpress.errors import DataDependentError
from graphpress.frontends.torch_export import trace


class _SplitByValues(nn.Module):
    """Sizes from ``.tolist()`` (Qwen2-VL's ``cu_seqlens``), a branch on ``.any()``, a count from ``.item()``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        parts = torch.split(self.proj(x), lengths.tolist(), dim=0)
        if (lengths > 2).any():
            parts = [part * 2 for part in parts]
        return torch.cat([part.sum(0, keepdim=True) for part in parts]) + lengths.max().item()


class _Router(nn.Module):
    """A learned router whose expert sizes are read back (JetMoE): the read depends on the weights' values."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(16, 4, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16)) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expert = self.gate(x).argmax(-1)
        order = expert.argsort(stable=True)
        sizes = torch.bincount(expert, minlength=4).tolist()
        groups = x[order].split(sizes)
        out = torch.cat([layer(group) for layer, group in zip(self.experts, groups)])
        return torch.zeros_like(x).index_add(0, order, out)


class _PaddedByTensor(nn.Module):
    """A pad width computed from an input's value and converted to int inside torch (EnCodec's extra padding)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 6, 4, stride=3)

    def forward(self, x: torch.Tensor, target_length: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pad(x, (0, target_length - x.shape[-1])))


class _Repeated(nn.Module):
    """``repeat_interleave`` by a tensor of counts: an op whose output size depends on the data (along a dim, and
    over the flattened tensor when no dim is given)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        flat = x[:2].repeat_interleave(counts.repeat(3)[:8]).sum()
        return self.proj(x.repeat_interleave(counts, dim=0)) + flat


class _ExpertsByName(nn.Module):
    """Experts looked up by a name formatted from a tensor index, tokens found with ``torch.where(mask)`` (the
    Switch Transformers / Mixtral expert loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(8, 3, bias=False)
        self.experts = nn.ModuleDict({f"expert_{i}": nn.Linear(8, 8) for i in range(3)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chosen = nn.functional.one_hot(self.gate(x).argmax(-1), 3)
        out = torch.zeros_like(x)
        for expert in (chosen.sum(0) > 0).nonzero():
            (tokens,) = torch.where(chosen[:, expert[0]] > 0)
            out = out.index_add(0, tokens, self.experts[f"expert_{expert[0]}"](x[tokens]))
        return out


def _onnx_error(model: nn.Module, *inputs: torch.Tensor) -> float:
    """Relative max error of the traced graph's ONNX file against the model, on the example inputs."""
    with tempfile.TemporaryDirectory() as folder:
        file = os.path.join(folder, "model.onnx")
        save_onnx(trace(model, inputs), file)
        session = ort.InferenceSession(file)
        got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
    want = model(*inputs).detach().numpy()
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_values_read_into_python_are_taken_from_the_example_and_listed() -> None:
    torch.manual_seed(0)
    model, inputs = _SplitByValues().eval(), (torch.randn(6, 8), torch.tensor([1, 2, 3]))
    with pytest.warns(UserWarning, match=r"(?s)reads 5 tensor value\(s\).*test_torch_fe_example_values.py:\d+: 3 x value read"):
        graph = trace(model, inputs)
    reads = graph.metadata["specialised_values"]
    assert [read.value for read in reads] == ["1", "2", "3", "True", "3"]
    assert all("test_torch_fe_example_values.py" in read.location for read in reads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _onnx_error(model, *inputs) < 1e-6


def test_a_router_reads_sizes_computed_from_its_real_weights() -> None:
    # torch leaves a parameter's real twin uninitialised; sizes read from it were garbage (JetMoE 34% off)
    torch.manual_seed(1)
    model, x = _Router().eval(), torch.randn(24, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = trace(model, (x,))
        error = _onnx_error(model, x)
    want = torch.bincount(model.gate(x).argmax(-1), minlength=4).tolist()
    values = [read for read in graph.metadata["specialised_values"] if read.what == "value read into Python"]
    assert [int(read.value) for read in values] == want
    assert error < 1e-6


@pytest.mark.parametrize("model, inputs", [
    (_PaddedByTensor(), (torch.randn(1, 3, 17), torch.tensor(19))),
    (_Repeated(), (torch.randn(3, 4), torch.tensor([2, 0, 3]))),
], ids=["pad-width-from-a-tensor", "repeat-interleave-by-counts"])
def test_conversions_inside_torch_and_data_sized_ops_are_taken_from_the_example(model, inputs) -> None:
    torch.manual_seed(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _onnx_error(model.eval(), *inputs) < 1e-6
    assert any("from the example input" in str(w.message) for w in caught)


def test_experts_named_by_a_tensor_index_are_looked_up_with_its_value() -> None:
    torch.manual_seed(4)
    model, x = _ExpertsByName().eval(), torch.randn(12, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _onnx_error(model, x) < 1e-6
    assert any("data-sized nonzero" in str(w.message) for w in caught)


def test_specialise_values_false_refuses_and_says_how_to_allow() -> None:
    with pytest.raises(DataDependentError, match="specialise_values=True"):
        trace(_SplitByValues().eval(), (torch.randn(6, 8), torch.tensor([1, 2, 3])), specialise_values=False)


def test_a_model_with_shapes_alone_is_not_specialised() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no specialisation warning either
        graph = trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), (torch.randn(2, 4),))
    assert graph.metadata["specialised_values"] == []


def test_pruning_a_specialised_model_keeps_its_own_code_general() -> None:
    torch.manual_seed(3)
    model, x = _Router().eval(), torch.randn(24, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = graphpress.optimize(model, "prune-channels{ratio=0.25}", example_inputs=(x,))
    other = torch.randn(40, 16)  # another routing, other sizes: the pruned module still runs its own forward
    assert pruned(other).shape == (40, 16)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
