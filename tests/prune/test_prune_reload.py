"""Pruned Hugging Face models come back from ``save_pretrained`` + ``graphpress.load_pruned`` unchanged, also
where the class derives sizes from its config that pruning made it unable to express."""

from __future__ import annotations

import pytest
import torch

import graphpress
from graphpress.testing.arch_zoo import arch_case
from graphpress.testing.zoo_checks import call_case, optimize_kwargs


@pytest.mark.parametrize("name, scope", [
    ("gpt_neox", "local"),  # head_dim = hidden_size // heads and a rotary table of head_dim / 2: hidden is pruned
    ("gemma3_text", "global"),  # embed_scale = sqrt(hidden_size), a non-persistent buffer; widths per layer
    ("opt", "global"),  # a class the Auto mappings do not build with from_config (concrete classes)
])
def test_pruned_model_reloads_to_the_same_outputs(name, scope, tmp_path):
    case = arch_case(name)
    pruned = graphpress.optimize(case.model, f"prune-channels{{ratio=0.3,scope={scope}}}", **optimize_kwargs(case))
    pruned.save_pretrained(tmp_path)
    loaded = graphpress.load_pruned(tmp_path, model_class=type(pruned))
    for got, want in zip(call_case(loaded, case), call_case(pruned, case)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
