"""Layer surgery keeps save/reload/generate working, including layers of different widths."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from graphpress.passes.depth.hf_layers import (
    LAYER_WIDTHS_KEY,
    drop_layers,
    load_pretrained,
    record_layer_widths,
    replace_linear,
)


def tiny_llama(layers: int = 4) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def shrink_mlp(model: LlamaForCausalLM, index: int, width: int) -> None:
    mlp = model.model.layers[index].mlp
    replace_linear(mlp, "gate_proj", mlp.gate_proj.weight[:width], None)
    replace_linear(mlp, "up_proj", mlp.up_proj.weight[:width], None)
    replace_linear(mlp, "down_proj", mlp.down_proj.weight[:, :width], None)
    record_layer_widths(model)


def test_uniform_model_saves_and_loads_with_plain_from_pretrained(tmp_path):
    model = tiny_llama()
    drop_layers(model, [1])
    assert not hasattr(model.config, LAYER_WIDTHS_KEY)
    model.save_pretrained(tmp_path)
    reloaded = LlamaForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.randint(0, 96, (2, 9))
    torch.testing.assert_close(reloaded(tokens).logits, model(tokens).logits)
    assert reloaded.config.graphpress_layer_map == [[0, 1], [2, 2], [3, 3]]


def test_non_uniform_widths_round_trip_through_load_pretrained(tmp_path):
    model = tiny_llama()
    shrink_mlp(model, 2, 20)
    widths = getattr(model.config, LAYER_WIDTHS_KEY)
    assert [w["intermediate_size"] for w in widths] == [48, 48, 20, 48]
    drop_layers(model, [0])
    assert [w["intermediate_size"] for w in getattr(model.config, LAYER_WIDTHS_KEY)] == [48, 20, 48]
    model.save_pretrained(tmp_path)
    with pytest.raises((RuntimeError, ValueError)):
        LlamaForCausalLM.from_pretrained(tmp_path)  # plain HF builds uniform layers: shapes mismatch
    reloaded = load_pretrained(tmp_path)
    tokens = torch.randint(0, 96, (2, 9))
    torch.testing.assert_close(reloaded(tokens).logits, model(tokens).logits)
    generated = reloaded.generate(tokens[:1, :4], max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert torch.equal(generated, model.generate(tokens[:1, :4], max_new_tokens=3, min_new_tokens=3,
                                                 do_sample=False))


@pytest.mark.parametrize("pipeline", ["prune-depth{ratio=0.2},distill{steps=5}",
                                      "merge-layers{layers=1,method=come},distill{steps=5}"])
def test_optimize_runs_a_depth_pipeline_end_to_end(pipeline):
    pytest.importorskip("graphpress.backends.torch_module")
    import graphpress

    model = tiny_llama(5)
    calibration = torch.randint(0, 96, (4, 16))
    small = graphpress.optimize(model, pipeline, calibration=calibration)
    assert small.config.num_hidden_layers == 4
    assert model.config.num_hidden_layers == 5  # the user's model is untouched
    assert small.generate(calibration[:1, :4], max_new_tokens=2, min_new_tokens=2).shape == (1, 6)
