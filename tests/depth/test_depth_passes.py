"""prune-depth, merge-layers (come, laco) and distill on tiny random Llama models: structure, config, quality."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from graphpress.errors import OptionError, PassError
from graphpress.ir import Graph
from graphpress.passes import PassContext, create_pass
from graphpress.passes.depth.concat_merge import ChannelSensitivity, concat_merge
from graphpress.passes.depth.hf_layers import LAYER_MAP_KEY, layer_width


def tiny_llama(layers: int = 6) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def run_pass(model, text: str, teacher=None, calibration=None):
    """Run one pass (``name`` plus keyword options) on ``model`` in place; its statistics."""
    name, _, inner = text.partition("{")
    options = dict(item.split("=") for item in inner.rstrip("}").split(",")) if inner else {}
    graph = Graph("t")
    graph.module = model
    ctx = PassContext(calibration=calibration if calibration is not None else torch.randint(0, 96, (4, 16)))
    ctx.extras["reference_module"] = teacher
    compression_pass = create_pass(name, **options)
    compression_pass.requires(graph, ctx)
    return compression_pass.call(graph, ctx).stats


def assert_consistent(model, layers: int) -> None:
    assert model.config.num_hidden_layers == layers == len(model.model.layers)
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == list(range(layers))
    assert len(getattr(model.config, LAYER_MAP_KEY)) == layers
    if getattr(model.config, "layer_types", None) is not None:
        assert len(model.config.layer_types) == layers


def test_prune_depth_drops_lowest_block_influence_layers():
    model = tiny_llama()
    stats = run_pass(model, "prune-depth{layers=2}")
    influence = stats["block_influence"]
    lowest = sorted(sorted(range(6), key=influence.__getitem__)[:2])
    assert stats["removed_original_layers"] == lowest
    assert_consistent(model, 4)
    assert stats["decoder_params_removed_fraction"] == pytest.approx(2 / 6, abs=1e-3)


def test_prune_depth_ratio_rounds_to_whole_layers():
    model = tiny_llama(10)
    stats = run_pass(model, "prune-depth{ratio=0.27}")
    assert stats["layers_removed"] == 3
    assert_consistent(model, 7)


def test_prune_depth_rejects_both_or_neither_budget_and_too_many_layers():
    with pytest.raises(OptionError):
        run_pass(tiny_llama(), "prune-depth{ratio=0.2,layers=1}")
    with pytest.raises(OptionError):
        run_pass(tiny_llama(), "prune-depth")
    with pytest.raises(OptionError):
        run_pass(tiny_llama(), "prune-depth{layers=6}")


def test_dropped_layers_are_absorbed_by_the_kept_layer_before_them():
    model = tiny_llama()
    from graphpress.passes.depth.hf_layers import drop_layers

    drop_layers(model, [0, 2, 3])
    assert getattr(model.config, LAYER_MAP_KEY) == [[0, 3], [4, 4], [5, 5]]


@pytest.mark.parametrize("method", ["come", "laco"])
def test_merge_layers_keeps_model_consistent_and_generating(method):
    model = tiny_llama()
    stats = run_pass(model, f"merge-layers{{layers=2,method={method},span=2}}")
    assert stats["layers_removed"] == 2
    assert_consistent(model, 4)
    spans = getattr(model.config, LAYER_MAP_KEY)
    assert spans[0][0] == 0 and spans[-1][1] == 5
    assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:]))
    prompt = torch.randint(0, 96, (1, 5))
    generated = model.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 9)


def test_come_merge_removes_one_layer_worth_of_parameters():
    model = tiny_llama()
    before = sum(p.numel() for p in model.model.layers.parameters())
    run_pass(model, "merge-layers{layers=1,method=come}")
    after = sum(p.numel() for p in model.model.layers.parameters())
    assert after == before * 5 // 6


def test_concat_merge_of_a_layer_with_a_silent_layer_reproduces_the_layer():
    """If layer b's channels are all worthless, the merge must compute exactly what layer a computed."""
    model = tiny_llama(2)
    layer_a, layer_b = model.model.layers
    with torch.no_grad():
        layer_a.input_layernorm.weight.uniform_(0.5, 1.5)
        layer_a.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    reference = copy.deepcopy(layer_a)
    strong = ChannelSensitivity(torch.ones(2), torch.ones(48))
    silent = ChannelSensitivity(torch.zeros(2), torch.zeros(48))
    concat_merge(layer_a, layer_b, strong, silent)
    hidden = torch.randn(1, 7, 32)
    position = torch.arange(7)[None]
    rotary = model.model.rotary_emb(hidden, position)
    expected = reference(hidden, position_embeddings=rotary, attention_mask=None)
    merged = layer_a(hidden, position_embeddings=rotary, attention_mask=None)
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-5)


def test_concat_merge_takes_channels_from_both_layers_when_both_matter():
    model = tiny_llama(2)
    layer_a, layer_b = model.model.layers
    expected_down = torch.cat([layer_a.mlp.down_proj.weight[:, :24], layer_b.mlp.down_proj.weight[:, 24:]], dim=1)
    mlp_a = torch.cat([torch.ones(24), torch.zeros(24)])
    mlp_b = torch.cat([torch.zeros(24), torch.ones(24)])
    concat_merge(layer_a, layer_b, ChannelSensitivity(torch.tensor([1.0, 0.0]), mlp_a),
                 ChannelSensitivity(torch.tensor([0.0, 1.0]), mlp_b))
    torch.testing.assert_close(layer_a.mlp.down_proj.weight, expected_down)
    assert layer_width(layer_a) == {"num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48}


def test_laco_collapse_adds_parameter_differences():
    from graphpress.passes.depth.merge_layers import laco_collapse

    model = tiny_llama(3)
    layers = list(model.model.layers)
    merged = laco_collapse(layers)
    name = "mlp.up_proj.weight"
    weights = [dict(layer.named_parameters())[name] for layer in layers]
    torch.testing.assert_close(dict(merged.named_parameters())[name], weights[1] + weights[2] - weights[0])


def test_distill_reduces_the_error_of_merged_layers_and_never_touches_the_teacher():
    teacher = tiny_llama()
    teacher_state = copy.deepcopy(teacher.state_dict())
    student = copy.deepcopy(teacher)
    calibration = torch.randint(0, 96, (4, 16))
    run_pass(student, "merge-layers{layers=2,method=come}", calibration=calibration)
    stats = run_pass(student, "distill{steps=30,lr=0.001,samples=4}", teacher=teacher, calibration=calibration)
    trained = [entry for entry in stats["per_layer"] if entry["trained"]]
    merged = [span for span in getattr(student.config, LAYER_MAP_KEY) if span[1] > span[0]]
    assert stats["layers_trained"] == len(trained) == len(merged) >= 1
    assert all(entry["loss_after"] < entry["loss_before"] for entry in trained)
    assert all(torch.equal(teacher_state[k], v) for k, v in teacher.state_dict().items())
    assert all(not p.requires_grad or p.grad is None for p in student.parameters())


def test_distill_scope_changed_skips_untouched_layers_and_needs_a_teacher():
    teacher = tiny_llama(3)
    student = copy.deepcopy(teacher)
    stats = run_pass(student, "distill{steps=2}", teacher=teacher)
    assert stats["layers_trained"] == 0
    with pytest.raises(PassError):
        run_pass(copy.deepcopy(teacher), "distill{steps=2}", teacher=None)


def test_depth_passes_refuse_non_llama_layers():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                intermediate_size=32)).eval()
    with pytest.raises(PassError):
        run_pass(bert, "merge-layers{layers=1}", calibration=torch.randint(0, 50, (2, 8)))


def test_laco_stops_when_no_collapse_keeps_the_output_close_enough():
    model = tiny_llama()
    stats = run_pass(model, "merge-layers{layers=2,method=laco,min_cosine=1.0}")
    assert stats["layers_removed"] == 0 and stats["stopped_early"]
    assert model.config.num_hidden_layers == len(model.model.layers) == 6
