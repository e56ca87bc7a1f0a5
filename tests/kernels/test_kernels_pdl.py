"""Programmatic dependent launch settings (pdl.py): where it may be on, and how it is chosen."""

import pytest
import torch

pytest.importorskip("triton")

from graphpress.backends.triton import gpu_facts, pdl  # noqa: E402


def _pretend_hopper(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(gpu_facts, "_memo", {0: gpu_facts.GpuFacts("pretend H100", 132, 9)})
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_never_on_the_cpu_or_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("GRAPHPRESS_PDL", "prefetch")
    assert pdl.pdl_mode(torch.device("cpu")) == pdl.PDL_OFF
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert pdl.pdl_mode(torch.device("cuda", 0)) == pdl.PDL_OFF


def test_chains_by_default_and_chosen_by_the_environment(monkeypatch):
    _pretend_hopper(monkeypatch)
    monkeypatch.delenv("GRAPHPRESS_PDL", raising=False)
    assert pdl.pdl_mode(torch.device("cuda", 0)) == pdl.PDL_CHAIN
    for value, mode in (("wait", pdl.PDL_WAIT), ("Prefetch", pdl.PDL_PREFETCH), ("off", pdl.PDL_OFF),
                        ("chain", pdl.PDL_CHAIN)):
        monkeypatch.setenv("GRAPHPRESS_PDL", value)
        assert pdl.pdl_mode(torch.device("cuda", 0)) == mode
    monkeypatch.setenv("GRAPHPRESS_PDL", "sometimes")
    with pytest.raises(ValueError, match="expected one of chain, off, wait, prefetch"):
        pdl.pdl_mode(torch.device("cuda", 0))


@pytest.mark.parametrize("mode, after_inductor, after_product", [
    ("chain", dict(PDL=pdl.PDL_SIGNAL), dict(PDL=pdl.PDL_PREFETCH, launch_pdl=True)),
    ("off", {}, {}),
    ("wait", dict(PDL=pdl.PDL_WAIT, launch_pdl=True), dict(PDL=pdl.PDL_WAIT, launch_pdl=True)),
    ("prefetch", dict(PDL=pdl.PDL_PREFETCH, launch_pdl=True), dict(PDL=pdl.PDL_PREFETCH, launch_pdl=True)),
])
def test_only_a_chained_product_is_a_dependent_launch_by_default(monkeypatch, mode, after_inductor, after_product):
    """``chain``: an ordinary launch that signals, unless the product follows graphpress's own (then a
    prefetching dependent); the other modes treat every product alike."""
    _pretend_hopper(monkeypatch)
    monkeypatch.setenv("GRAPHPRESS_PDL", mode)
    cuda = torch.device("cuda", 0)
    assert pdl.launch_arguments(cuda, follows_product=False) == after_inductor
    assert pdl.launch_arguments(cuda, follows_product=True) == after_product
    assert pdl.launch_arguments(torch.device("cpu"), follows_product=True) == {}


def test_the_tuner_times_plain_launches(monkeypatch):
    _pretend_hopper(monkeypatch)
    monkeypatch.setenv("GRAPHPRESS_PDL", "prefetch")
    with pdl.plain_launches():
        with pdl.plain_launches():
            assert pdl.pdl_mode(torch.device("cuda", 0)) == pdl.PDL_OFF
        assert pdl.pdl_mode(torch.device("cuda", 0)) == pdl.PDL_OFF
    assert pdl.pdl_mode(torch.device("cuda", 0)) == pdl.PDL_PREFETCH


def test_older_gpus_get_plain_launches(monkeypatch):
    _pretend_hopper(monkeypatch)
    monkeypatch.setattr(gpu_facts, "_memo", {0: gpu_facts.GpuFacts("pretend A100", 108, 8)})
    monkeypatch.setenv("GRAPHPRESS_PDL", "prefetch")
    assert pdl.pdl_mode(torch.device("cuda", 0)) == pdl.PDL_OFF
