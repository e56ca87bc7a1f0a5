"""Pruned Hugging Face models come back from ``save_pretrained`` + ``graphpress.load_pruned`` unchanged, also
where the class derives sizes from its config that pruning made it unable to express."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import graphpress
from graphpress.backends.hf_fixups import fix_config
from graphpress.backends.hf_meta_build import persist_resized_tensors, set_validated
from graphpress.testing.arch_zoo import arch_case
from graphpress.testing.zoo_checks import call_case, optimize_kwargs


def _pruned(name: str, scope: str) -> tuple:
    case = arch_case(name)
    return case, graphpress.optimize(case.model, f"prune-channels{{ratio=0.3,scope={scope}}}", **optimize_kwargs(case))


def _assert_same_outputs(model: torch.nn.Module, reference: torch.nn.Module, case) -> None:
    for got, want in zip(call_case(model, case), call_case(reference, case)):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, scope", [
    ("gpt_neox", "local"),  # head_dim = hidden_size // heads and a rotary table of head_dim / 2: hidden is pruned
    ("gemma3_text", "global"),  # embed_scale = sqrt(hidden_size), a non-persistent buffer; widths per layer
    ("opt", "global"),  # a class the Auto mappings do not build with from_config (concrete classes)
    ("opt", "local"),  # hidden_size != word_embed_proj_dim would build project_in/out: the config keeps its width
    ("bart", "local"),  # encoder/decoder embed_tokens tied to shared in the base model, not the LM-head class
    ("marian", "local"),  # position embeddings the class leaves out of its checkpoints: missing by design
    ("mamba2", "local"),  # the config validator ties hidden_size * expand to the frozen mixer's heads
    ("whisper_encoder", "local"),  # get_input_embeddings is conv1 (mel bins wide); 3 heads don't divide d_model
    ("data2vec_audio", "global"),  # a LayerNorm without weights: its pruned width is only in normalized_shape
])
def test_pruned_model_reloads_to_the_same_outputs(name, scope, tmp_path):
    case, pruned = _pruned(name, scope)
    pruned.save_pretrained(tmp_path)
    _assert_same_outputs(graphpress.load_pruned(tmp_path, model_class=type(pruned)), pruned, case)


def test_sliced_sinusoidal_buffers_are_saved_and_saved_again(tmp_path):
    """SpeechT5 computes its position tables (non-persistent buffers) from hidden_size when built: pruning
    slices the decoder's channels, which no config width rebuilds, and the encoder's, left alone, no longer
    matches the config's hidden_size (now the decoder's width). Both must be saved, and a reloaded model must
    save them again."""
    case, pruned = _pruned("speecht5", "local")
    pruned.save_pretrained(tmp_path / "once")
    saved = load_file(tmp_path / "once" / "model.safetensors")
    assert saved["speecht5.decoder.prenet.embed_positions.weights"].shape[1] < 64
    assert saved["speecht5.encoder.prenet.pos_sinusoidal_embed.weights"].shape[1] == 64
    loaded = graphpress.load_pruned(tmp_path / "once", model_class=type(pruned))
    _assert_same_outputs(loaded, pruned, case)
    loaded.save_pretrained(tmp_path / "twice")
    _assert_same_outputs(graphpress.load_pruned(tmp_path / "twice", model_class=type(pruned)), pruned, case)


def test_resized_tensor_the_class_does_not_save_is_saved(tmp_path):
    """Marian leaves its sinusoidal position embeddings (d_model wide) out of checkpoints and computes them when
    built; once their channels are sliced they must be saved, by the reloaded model too (sliced by hand here:
    pruning leaves them whole)."""
    model = arch_case("marian").model
    positions = model.model.encoder.embed_positions
    positions.weight = torch.nn.Parameter(positions.weight[:, :48].clone(), requires_grad=False)
    assert persist_resized_tensors(model) == ["model.encoder.embed_positions.weight"]
    assert "model.decoder.embed_positions.weight" in model._keys_to_ignore_on_save
    fix_config(model, "", None)  # records the shapes, as finalizing a pruned model does
    model.save_pretrained(tmp_path / "once")
    loaded = graphpress.load_pruned(tmp_path / "once", model_class=type(model))
    assert torch.equal(loaded.model.encoder.embed_positions.weight, positions.weight)
    loaded.save_pretrained(tmp_path / "twice")
    assert "model.encoder.embed_positions.weight" in load_file(tmp_path / "twice" / "model.safetensors")


def test_groupnorm_pruned_by_whole_groups_reloads(tmp_path):
    """HuBERT's feature encoder normalizes with one channel per group: pruning channels removes groups, and the
    pruned count is only in the recorded module scalars (the fix-ups run on a model without a graph)."""
    case, pruned = _pruned("hubert", "local")
    norm = "feature_extractor.conv_layers.0.layer_norm"
    assert pruned.get_submodule(norm).num_groups < case.model.config.conv_dim[0]
    pruned.save_pretrained(tmp_path)
    loaded = graphpress.load_pruned(tmp_path, model_class=type(pruned))
    assert loaded.get_submodule(norm).num_groups == pruned.get_submodule(norm).num_groups
    _assert_same_outputs(loaded, pruned, case)


def test_config_updates_its_validators_refuse_are_left_out():
    from transformers import Mamba2Config

    config = Mamba2Config(hidden_size=64, expand=2, num_heads=8, head_dim=16, n_groups=1)
    refused = set_validated(config, {"hidden_size": 48, "num_hidden_layers": 3})
    assert refused == {"hidden_size": 48}
    assert (config.hidden_size, config.num_hidden_layers) == (64, 3)
    config.validate()


def test_config_hidden_size_is_not_read_from_a_convolution():
    """Whisper's encoder answers get_input_embeddings with conv1, whose weight is (d_model, mel bins, 3): the
    config's d_model is not the number of mel bins."""
    model = arch_case("whisper_encoder").model
    fix_config(model, "", None)
    assert model.config.d_model == 64


def test_config_update_of_an_attribute_the_config_lacks():
    """Qwen2's config has no head_dim attribute until fix_config gives it one."""
    from transformers import Qwen2Config

    config = Qwen2Config(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96)
    assert not hasattr(config, "head_dim")
    assert set_validated(config, {"head_dim": 16, "hidden_size": 48}) == {}
    assert (config.head_dim, config.hidden_size) == (16, 48)
    config = Qwen2Config(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96)
    assert set_validated(config, {"head_dim": 16}, _Refusing) == {"head_dim": 16}
    assert not hasattr(config, "head_dim")


class _Refusing:
    """A model class that refuses to build from a config with a head_dim (set_validated must undo it)."""

    @classmethod
    def _from_config(cls, config):
        if hasattr(config, "head_dim"):
            raise ValueError("no head_dim here")
        return torch.nn.Linear(2, 2)
