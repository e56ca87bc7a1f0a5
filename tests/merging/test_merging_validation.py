"""Checkpoints that cannot be merged are refused before anything is written, naming the culprit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from graphpress.errors import GraphpressError, OptionError, UnsafeFileError
from graphpress.merging import (
    CorruptCheckpointError,
    IncompatibleModelsError,
    MissingTensorError,
    TokenizerMismatchError,
    merge_models,
)


@pytest.fixture
def trio(make_llama):
    return make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)


def refuse(base, models, tmp_path, error_type, *fragments):
    """Merge must raise ``error_type`` whose message holds every fragment, and write nothing."""
    with pytest.raises(error_type) as caught:
        merge_models(base, models, method="linear", output=tmp_path / "out")
    assert issubclass(error_type, GraphpressError)
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_different_model_type(trio, tmp_path):
    base, one, two = trio
    config = json.loads((two / "config.json").read_text())
    (two / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    refuse(base, [one, two], tmp_path, IncompatibleModelsError, str(two), "mistral", "llama")


def test_different_shapes(trio, make_llama, tmp_path):
    base, one, _ = trio
    wider = make_llama("wider", 3, intermediate_size=48)
    refuse(
        base,
        [one, wider],
        tmp_path,
        IncompatibleModelsError,
        "model.layers.0.mlp.down_proj.weight",
        "[16, 48]",
        str(wider),
    )


def test_missing_tensor(trio, tmp_path):
    base, one, two = trio
    tensors = load_file(str(two / "model.safetensors"))
    del tensors["model.layers.1.self_attn.k_proj.weight"]
    save_file(tensors, str(two / "model.safetensors"), metadata={"format": "pt"})
    refuse(base, [one, two], tmp_path, MissingTensorError, "model.layers.1.self_attn.k_proj.weight", str(two))


def test_extra_tensor(trio, tmp_path):
    base, one, two = trio
    tensors = load_file(str(one / "model.safetensors"))
    tensors["adapter.weight"] = torch.zeros(2)
    save_file(tensors, str(one / "model.safetensors"), metadata={"format": "pt"})
    refuse(base, [one, two], tmp_path, MissingTensorError, "adapter.weight")


def test_truncated_safetensors(trio, tmp_path):
    base, one, two = trio
    weights = one / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    refuse(base, [one, two], tmp_path, CorruptCheckpointError, str(weights), "truncated")


def test_garbage_header(trio, tmp_path):
    base, one, two = trio
    weights = two / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\xff\xfe{{{{{{"
    weights.write_bytes(bytes(data))
    refuse(base, [one, two], tmp_path, CorruptCheckpointError, str(weights))


def test_index_naming_a_missing_shard(trio, tmp_path):
    base, one, two = trio
    weights = one / "model.safetensors"
    names = list(load_file(str(weights)))
    weights.rename(one / "model-00001-of-00002.safetensors")
    index = {"weight_map": {name: "model-00001-of-00002.safetensors" for name in names}}
    index["weight_map"][names[0]] = "model-00002-of-00002.safetensors"
    (one / "model.safetensors.index.json").write_text(json.dumps(index))
    refuse(base, [one, two], tmp_path, MissingTensorError, "model-00002-of-00002.safetensors", names[0])


def test_different_tokenizer(trio, make_llama, tmp_path):
    base, one, _ = trio
    swapped = {f"tok{index}": index for index in range(32)}
    swapped["tok3"], swapped["tok4"] = 4, 3
    other = make_llama("other_tokenizer", 4, vocabulary=swapped)
    refuse(base, [one, other], tmp_path, TokenizerMismatchError, str(other), "'tok3'")


def test_pickled_weights_only(trio, tmp_path):
    base, one, two = trio
    (one / "model.safetensors").unlink()
    (one / "pytorch_model.bin").write_bytes(b"not unpickled")
    refuse(base, [one, two], tmp_path, UnsafeFileError, str(one), "pickled")


def test_output_may_not_be_an_input(trio, tmp_path):
    base, one, two = trio
    before = (one / "model.safetensors").read_bytes()
    with pytest.raises(OptionError, match="one of the input checkpoints"):
        merge_models(base, [one, two], output=one)
    assert (one / "model.safetensors").read_bytes() == before
