"""``graphpress merge`` on the command line: success writes a loadable folder, refusals exit 2 with the reason."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaForCausalLM

from graphpress.merging.cli import main_merge


def test_cli_merges_with_every_option(make_llama, tmp_path, capsys):
    base, one, two = make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)
    output = tmp_path / "out"
    status = main_merge(
        [
            str(base),
            str(one),
            str(two),
            "--method",
            "dare_ties",
            "--weights",
            "1",
            "2",
            "--density",
            "0.7",
            "--lambda",
            "0.8",
            "--seed",
            "3",
            "-o",
            str(output),
            "--quiet",
        ]
    )
    assert status == 0
    assert "merged 2 models with dare_ties" in capsys.readouterr().out
    record = json.loads((output / "graphpress_merge.json").read_text())
    assert record | {"base": None, "models": None} == {
        "method": "dare_ties",
        "weights": [1.0, 2.0],
        "density": 0.7,
        "lambda": 0.8,
        "seed": 3,
        "base": None,
        "models": None,
    }
    logits = LlamaForCausalLM.from_pretrained(output)(torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()


def test_cli_reports_a_refusal_and_writes_nothing(make_llama, tmp_path, capsys):
    base, one = make_llama("base", 0), make_llama("one", 1)
    wider = make_llama("wider", 2, hidden_size=32)
    status = main_merge([str(base), str(one), str(wider), "-o", str(tmp_path / "out"), "--quiet"])
    assert status == 2
    error_line = capsys.readouterr().err.splitlines()[-1]
    assert error_line.startswith("graphpress merge: error: tensor '")
    assert f"in {wider} but" in error_line
    assert not (tmp_path / "out").exists()


def test_cli_rejects_unknown_method(make_llama, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main_merge(["base", "one", "--method", "soup", "-o", str(tmp_path / "out")])
    assert exited.value.code == 2
