"""Block-by-block calibration: exact statistics, callbacks see edited predecessors, all input forms work."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

from graphpress.calibration import LinearInputStats, find_blocks, run_blockwise
from graphpress.errors import OptionError


def tiny_llama(layers: int = 3) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(config).eval()


def full_forward_input(model, module, tokens) -> torch.Tensor:
    seen = []
    handle = module.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    with torch.no_grad():
        model(tokens)
    handle.remove()
    return torch.cat([x.reshape(-1, x.shape[-1]) for x in seen]).double()


def test_statistics_match_a_full_forward_pass():
    model = tiny_llama()
    tokens = torch.randint(0, 256, (5, 16))
    stats = run_blockwise(model, tokens, with_gram=True, batch_size=2)
    x = full_forward_input(model, model.model.layers[2].mlp.down_proj, tokens)
    down = stats["model.layers.2.mlp.down_proj"]
    assert down.tokens == 80
    torch.testing.assert_close(down.gram, x.T @ x)
    torch.testing.assert_close(down.mean, x.mean(0))
    torch.testing.assert_close(down.variance, x.var(0, unbiased=False))
    torch.testing.assert_close(down.l2_norm, x.norm(dim=0))
    torch.testing.assert_close(down.max_abs, x.abs().amax(0))
    torch.testing.assert_close(down.mean_abs, x.abs().mean(0))
    torch.testing.assert_close(down.hessian(), 2 * x.T @ x / 80)


def test_linears_reading_one_tensor_share_their_statistics():
    stats = run_blockwise(tiny_llama(1), torch.randint(0, 256, (2, 8)))
    assert stats["model.layers.0.self_attn.q_proj"] is stats["model.layers.0.self_attn.v_proj"]
    assert stats["model.layers.0.mlp.gate_proj"] is stats["model.layers.0.mlp.up_proj"]
    assert stats["model.layers.0.mlp.down_proj"] is not stats["model.layers.0.mlp.up_proj"]


def test_callback_edits_are_seen_by_later_blocks():
    model = tiny_llama()
    inputs_seen: dict[int, torch.Tensor] = {}

    def silence_block(context):
        inputs_seen[context.index] = torch.cat(context.inputs)
        assert set(context.stats) == set(context.linears)
        if context.index == 0:
            # With both residual branches zeroed, block 0 passes its input straight through.
            context.block.self_attn.o_proj.weight.zero_()
            context.block.mlp.down_proj.weight.zero_()
            assert torch.equal(torch.cat(context.run()), inputs_seen[0])

    run_blockwise(model, torch.randint(0, 256, (3, 8)), callback=silence_block, keep_stats=False)
    assert torch.equal(inputs_seen[1], inputs_seen[0])
    assert not torch.equal(inputs_seen[2], inputs_seen[1])


def test_keep_stats_false_returns_nothing_but_runs_every_block():
    done = []
    result = run_blockwise(tiny_llama(), torch.randint(0, 256, (2, 8)), keep_stats=False,
                           progress=lambda i, n: done.append((i, n)))
    assert result == {} and done == [(1, 3), (2, 3), (3, 3)]


def test_text_calibration_with_tokenizer_and_input_dicts_on_bert():
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4)).eval()
    assert find_blocks(bert)[0] == "encoder.layer"
    batches = [{"input_ids": torch.randint(0, 100, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}]
    stats = run_blockwise(bert, batches)
    assert stats["encoder.layer.1.output.dense"].in_features == 64
    assert stats["encoder.layer.0.attention.self.query"].tokens == 16

    class WordTokenizer:
        def __call__(self, text, return_tensors=None, truncation=False, max_length=None):
            ids = [hash(word) % 256 for word in text.split()][:max_length]
            return {"input_ids": torch.tensor([ids])}

    stats = run_blockwise(tiny_llama(1), ["one two three", "four five"], tokenizer=WordTokenizer())
    assert isinstance(stats["model.layers.0.mlp.down_proj"], LinearInputStats)
    assert stats["model.layers.0.mlp.down_proj"].tokens == 5


@pytest.mark.parametrize("bad", [[], ["text without tokenizer"], torch.zeros(2, 3), [1, 2]])
def test_bad_calibration_is_an_option_error(bad):
    with pytest.raises(OptionError):
        run_blockwise(tiny_llama(1), bad)
