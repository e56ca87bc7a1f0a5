"""The input model is never mutated unless inplace=True: every registered pass, every tensor and attribute.

Each registered pass runs through ``graphpress.optimize`` on a tiny Llama (4 layers, GQA) and the
compression passes on a tiny CNN; before and after, the test compares every state_dict tensor bit for
bit, every plain attribute of every submodule, and the Hugging Face config. A pipeline that refuses a
model (a GraphpressError) must leave it untouched too. A new pass registered without an entry here fails the
coverage test, so the guarantee grows with the registry.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import graphpress
from graphpress.errors import GraphpressError, PassError
from graphpress.testing import tiny_case
from graphpress.testing.faults import ZeroWeightsThenFail

# One small pipeline per registered pass (distill needs a changed model to learn from).
PIPELINE_OF_PASS = {
    "dce": "dce",
    "fold-constants": "fold-constants",
    "fold-bn": "fold-bn",
    "fold-affine": "fold-affine",
    "fold-linear": "fold-linear",
    "fuse-qkv": "fuse-qkv",
    "fuse-gate-up": "fuse-gate-up",
    "fuse-siblings": "fuse-siblings",
    "prune-channels": "prune-channels{ratio=0.3}",
    "prune-heads": "prune-heads{ratio=0.5}",
    "compensate-bias": "prune-channels{ratio=0.3,importance=flap},compensate-bias",
    "reconstruct": "prune-channels{ratio=0.3,importance=wanda},reconstruct",
    "quantize": "quantize{bits=4,group=16,ignore=none}",
    "sparsify": "sparsify{ratio=0.5,method=wanda}",
    "lower-sparse24": "sparsify{pattern=2:4,method=magnitude},lower-sparse24",
    "lower-triton": "quantize{bits=4,group=16,ignore=none},lower-triton",
    "prune-depth": "prune-depth{layers=1,samples=2}",
    "merge-layers": "merge-layers{layers=1,samples=2}",
    "distill": "prune-depth{layers=1,samples=2},distill{steps=2,samples=2,batch_size=1}",
}
CNN_PIPELINE = ("fold-bn,fold-affine,prune-channels{ratio=0.3},sparsify{ratio=0.5,method=magnitude,ignore=none},"
                "dce")


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logging.disable(logging.NOTSET)


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


_PLAIN = (int, float, str, bool, type(None), tuple, list, dict, torch.Size, torch.dtype)


def snapshot(model: torch.nn.Module) -> dict:
    """Everything a pass could change: tensors (cloned), plain attributes, module types, the config."""
    attributes = {}
    for path, module in model.named_modules():
        attributes[path] = (type(module).__name__,
                            {k: repr(v) for k, v in vars(module).items() if isinstance(v, _PLAIN)})
    config = getattr(model, "config", None)
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "attributes": attributes,
        "config": config.to_json_string() if config is not None else None,
    }


def assert_same(before: dict, model: torch.nn.Module) -> None:
    after = snapshot(model)
    assert after["tensors"].keys() == before["tensors"].keys()
    for key, tensor in before["tensors"].items():
        other = after["tensors"][key]
        assert other.dtype == tensor.dtype and other.shape == tensor.shape, key
        assert torch.equal(other, tensor), f"{key} changed"
    assert after["attributes"] == before["attributes"]
    assert after["config"] == before["config"]


def test_every_registered_pass_has_a_no_mutation_case():
    # Built-in passes only: other test modules register throwaway passes in the same process.
    from graphpress.passes import list_passes

    built_in = {cls.name for cls in list_passes() if cls.__module__.startswith("graphpress.")}
    assert built_in <= set(PIPELINE_OF_PASS), "add the new pass to PIPELINE_OF_PASS"


@pytest.mark.parametrize("pass_name", sorted(PIPELINE_OF_PASS))
def test_llama_input_is_untouched_by(pass_name):
    model = tiny_llama()
    before = snapshot(model)
    tokens = torch.randint(0, 96, (1, 8), generator=torch.Generator().manual_seed(1))
    calibration = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(2))
    result = graphpress.optimize(model, PIPELINE_OF_PASS[pass_name], example_inputs=(tokens,),
                                 calibration=calibration)
    assert_same(before, model)
    assert result is not model


def test_cnn_input_is_untouched():
    case = tiny_case("resnet")
    before = snapshot(case.model)
    result = graphpress.optimize(case.model, CNN_PIPELINE, example_inputs=case.inputs)
    assert_same(before, case.model)
    assert sum(p.numel() for p in result.parameters()) < sum(p.numel() for p in case.model.parameters())


def test_a_refused_model_is_untouched():
    case = tiny_case("resnet")
    before = snapshot(case.model)
    with pytest.raises(GraphpressError):  # no decoder layers to merge in a CNN
        graphpress.optimize(case.model, "fold-bn,merge-layers{layers=1}", example_inputs=case.inputs,
                            calibration=torch.randn(2, 3, 32, 32))
    assert_same(before, case.model)


def test_inplace_with_a_failing_pass_leaves_the_model_exactly_as_before():
    model = tiny_llama()
    before = snapshot(model)
    tokens = torch.randint(0, 96, (1, 8))
    with pytest.raises(PassError, match="test-zero-weights-then-fail"):
        graphpress.optimize(model, ["prune-channels{ratio=0.3}", ZeroWeightsThenFail()],
                            example_inputs=(tokens,), inplace=True)
    assert_same(before, model)


def test_inplace_success_edits_the_callers_object():
    model = tiny_llama()
    result = graphpress.optimize(model, "prune-channels{ratio=0.3}", example_inputs=(torch.randint(0, 96, (1, 8)),),
                                 inplace=True)
    assert result is model and model.model.layers[0].mlp.up_proj.out_features < 48


def test_inplace_with_host_snapshots_edits_the_object_itself_and_restores_it_on_failure():
    model = tiny_llama()
    model.train()  # trace puts the model in eval mode: the restore must bring training mode back too
    before = snapshot(model)
    crash = ZeroWeightsThenFail()
    with pytest.raises(PassError, match="restored to its state before optimize"):
        graphpress.optimize(model, ["prune-channels{ratio=0.3}", crash], example_inputs=(torch.randint(0, 96, (1, 8)),),
                            inplace=True, snapshots="host")
    assert crash.seen[-1] is model  # no working copy: the passes edited the caller's object
    assert_same(before, model)
    assert model.training
    assert model(torch.randint(0, 96, (1, 8))).logits.shape == (1, 8, 96)  # a working model, not an empty shell


def test_inplace_with_host_snapshots_succeeds_without_a_copy():
    case = tiny_case("llama")
    model = case.model
    embedding = model.model.embed_tokens.weight
    result = graphpress.optimize(model, "quantize{bits=4,group=32}", example_inputs=case.inputs,
                                 example_kwargs=case.call_kwargs, inplace=True, snapshots="host")
    assert result is model and model.model.embed_tokens.weight is embedding  # the same tensor: no working copy
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "QuantizedLinear"


@pytest.mark.parametrize("name", ["llama_tied", "bert", "gpt2", "vit", "mobilenet"])
def test_host_copies_of_every_tensor_restore_each_architecture(name, monkeypatch):
    """The host-snapshot route with every tensor moved through host copies (on this CPU-only machine the default
    moves nothing): a failing in-place run must give back the model bit for bit, ties intact, still runnable."""
    import graphpress.api as api
    from graphpress.passes import manager
    from graphpress.passes import snapshot as snapshots

    moved = []

    def take_moving_everything(obj, on_host, movable=None):
        taken = snapshots.take_snapshot(obj, on_host, movable or (lambda t: True))
        moved.append(len(taken.moved))
        return taken

    monkeypatch.setattr(api, "take_snapshot", take_moving_everything)
    monkeypatch.setattr(manager, "take_snapshot", take_moving_everything)
    case = tiny_case(name)
    model = case.model
    before = snapshot(model)
    inputs = case.inputs if isinstance(case.inputs, tuple) else ()
    kwargs = case.inputs if isinstance(case.inputs, dict) else dict(case.call_kwargs or {})
    with pytest.raises(PassError, match="restored to its state before optimize"):
        graphpress.optimize(model, ["fold-bn", ZeroWeightsThenFail()], example_inputs=inputs or None,
                            example_kwargs=kwargs or None, inplace=True, snapshots="host")
    assert_same(before, model)
    assert moved and moved[0] > 0  # the original went through host copies, tensor by tensor
    if name == "llama_tied":
        assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        model(*inputs, **kwargs)
