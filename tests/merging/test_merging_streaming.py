"""Folders are merged tensor by tensor: never a whole state dict in memory, sharding in and out."""

from __future__ import annotations

import json
import weakref

import torch
from safetensors import safe_open as real_safe_open
from transformers import LlamaForCausalLM

import graphpress.merging.checkpoints as checkpoints
from graphpress.merging import merge_models


class CountingSafeOpen:
    """Stands in for ``safe_open``: counts reads and how many read tensors are alive at once."""

    def __init__(self) -> None:
        self.reads = 0
        self.max_alive = 0
        self._alive: list[weakref.ref] = []

    def __call__(self, path, framework, device="cpu"):
        handle = real_safe_open(path, framework=framework, device=device)
        counter = self

        class Handle:
            def get_tensor(self, name):
                tensor = handle.get_tensor(name)
                counter.reads += 1
                counter._alive = [ref for ref in counter._alive if ref() is not None] + [weakref.ref(tensor)]
                counter.max_alive = max(counter.max_alive, len(counter._alive))
                return tensor

        return Handle()


def test_merge_reads_each_tensor_once_and_holds_one_per_checkpoint(make_llama, tmp_path, monkeypatch):
    base, one, two = make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)
    counter = CountingSafeOpen()
    monkeypatch.setattr(checkpoints, "safe_open", counter)
    reports = []
    output = merge_models(
        base,
        [one, two],
        method="ties",
        density=0.5,
        output=tmp_path / "out",
        progress=lambda done, total, name: reports.append((done, total, name)),
    )

    tensor_count = len(LlamaForCausalLM.from_pretrained(base).state_dict())
    assert tensor_count > 10
    assert counter.reads == 3 * tensor_count
    # the tensors of the parameter being merged (one per checkpoint), nothing accumulated
    assert counter.max_alive <= 3
    assert [done for done, _, _ in reports] == list(range(1, tensor_count + 1))
    assert {total for _, total, _ in reports} == {tensor_count}
    assert (output / "model.safetensors").is_file()


def test_sharded_inputs_and_outputs_give_the_same_model(make_llama, tmp_path):
    base, one, two = make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)
    sharded = tmp_path / "one_sharded"
    LlamaForCausalLM.from_pretrained(one).save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()

    whole = merge_models(base, [one, two], method="task_arithmetic", lambda_=0.3, output=tmp_path / "whole")
    split = merge_models(
        base, [sharded, two], method="task_arithmetic", lambda_=0.3, output=tmp_path / "split", max_shard_bytes=8_000
    )
    index = json.loads((split / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not (split / "model.safetensors").exists()

    tokens = torch.tensor([[1, 5, 9, 3]])
    whole_logits = LlamaForCausalLM.from_pretrained(whole)(tokens).logits
    split_logits = LlamaForCausalLM.from_pretrained(split)(tokens).logits
    assert torch.equal(whole_logits, split_logits)


def test_output_loads_with_transformers_and_keeps_base_side_files(make_llama, tmp_path):
    base, one, two = make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)
    output = merge_models(base, [one, two], method="linear", output=tmp_path / "out")
    assert (output / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    assert json.loads((output / "config.json").read_text()) == json.loads((base / "config.json").read_text())
    assert json.loads((output / "graphpress_merge.json").read_text())["method"] == "linear"

    merged = LlamaForCausalLM.from_pretrained(output).state_dict()
    parents = [LlamaForCausalLM.from_pretrained(folder).state_dict() for folder in (one, two)]
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, (parents[0][name] + parents[1][name]) / 2)


def test_modules_can_be_written_as_a_folder(make_llama, tmp_path):
    models = [LlamaForCausalLM.from_pretrained(make_llama(name, seed)) for seed, name in enumerate(("b", "x", "y"))]
    output = merge_models(models[0], models[1:], method="slerp", output=tmp_path / "out")
    reloaded = LlamaForCausalLM.from_pretrained(output)
    in_memory = merge_models(models[0], models[1:], method="slerp")
    tokens = torch.tensor([[2, 4, 6]])
    assert torch.equal(reloaded(tokens).logits, in_memory(tokens).logits)
