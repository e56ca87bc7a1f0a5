"""The structure of traced graphs: ops kept whole, parameters bound to the working copy by state_dict
name, scopes, shapes and dtypes on every value, and the meta device."""

from __future__ import annotations

import pytest
import torch

from graphpress.frontends.torch_bindings import TransposedModuleBinding
from graphpress.frontends.torch_export import trace
from graphpress.ir import GRAPHPRESS_DOMAIN, ModuleBinding, verify
from graphpress.testing import meta_llama, tiny_case


def _all_values(graph):
    for node in graph.nodes:
        yield from (v for v in node.inputs if v is not None)
        yield from node.outputs


def test_llama_linears_and_attention_are_kept_whole() -> None:
    case = tiny_case("llama")
    graph = trace(case.model, case.inputs)
    # every exported op has a rule (the rotary no_grad region is inlined), so no decomposition ran
    assert graph.metadata["decomposed"] is False
    linears = [n for n in graph.nodes if n.op == "Linear" and n.domain == GRAPHPRESS_DOMAIN]
    assert len(linears) == 7 * 2 + 1  # q, k, v, o, gate, up, down per layer + lm_head
    state = set(case.model.state_dict())
    for node in linears:
        weight = node.inputs[1]
        assert isinstance(weight.param.binding, ModuleBinding) and weight.param.key in state
        assert weight.param.key == f"{node.scope}.weight"
        assert node.meta["module_class"] == "torch.nn.modules.linear.Linear"
    attention = graph.find("Attention")
    assert len(attention) == 2
    for node in attention:
        q, k, v = node.inputs[:3]
        # GQA stays visible: 4 query heads over 2 key/value heads, no repeated K/V in between
        assert (q.shape[1], k.shape[1], v.shape[1]) == (4, 2, 2)
        assert node.attrs["is_causal"] == 1 and len(node.inputs) == 3
        assert node.scope == f"model.layers.{attention.index(node)}.self_attn"


def test_every_value_has_shape_and_dtype() -> None:
    for name in ("llama", "bert", "mobilenet"):
        case = tiny_case(name)
        graph = trace(case.model, case.inputs)
        verify(graph)
        missing = [v.name for v in _all_values(graph) if v.shape is None or v.dtype is None]
        assert not missing, f"{name}: values without shape/dtype: {missing[:5]}"


def test_model_is_copied_and_bindings_edit_the_copy() -> None:
    case = tiny_case("llama")
    graph = trace(case.model, case.inputs)
    assert graph.module is not case.model and type(graph.module) is type(case.model)
    q_proj = next(v for v in graph.parameters() if v.param.key == "model.layers.0.self_attn.q_proj.weight")
    q_proj.param.data = torch.zeros_like(q_proj.param.data)
    assert graph.module.model.layers[0].self_attn.q_proj.weight.abs().sum() == 0
    assert case.model.model.layers[0].self_attn.q_proj.weight.abs().sum() > 0
    in_place = trace(case.model, case.inputs, inplace=True)
    assert in_place.module is case.model


def test_gpt2_conv1d_is_a_linear_over_a_transposed_binding() -> None:
    case = tiny_case("gpt2")
    graph = trace(case.model, case.inputs)
    c_attn = next(n for n in graph.find("Linear") if n.scope == "transformer.h.0.attn.c_attn")
    weight = c_attn.inputs[1]
    assert isinstance(weight.param.binding, TransposedModuleBinding)
    module = graph.module.transformer.h[0].attn.c_attn
    assert weight.shape == (96, 32) and tuple(module.weight.shape) == (32, 96)  # IR [out, in], module [in, out]
    weight.param.data = weight.param.data[:90]  # drop 6 output features through the IR's view
    assert tuple(module.weight.shape) == (32, 90) and isinstance(module.weight, torch.nn.Parameter)


def test_cnn_structures_survive() -> None:
    case = tiny_case("mobilenet")
    graph = trace(case.model, case.inputs)
    convs = graph.find("Conv")
    depthwise = [n for n in convs if n.attrs["group"] > 1 and n.attrs["group"] == n.inputs[1].shape[0]]
    grouped = [n for n in convs if 1 < n.attrs["group"] < n.inputs[1].shape[0]]
    assert depthwise and grouped
    assert graph.find("BatchNormalization") and graph.find("HardSwish") and graph.find("Split")
    shuffle = [n for n in graph.find("Transpose") if n.scope == "features.6"]
    assert shuffle and shuffle[0].attrs["perm"] == [0, 2, 1, 3, 4]
    seg = tiny_case("segnet")
    seg_graph = trace(seg.model, seg.inputs)
    (deconv,) = seg_graph.find("ConvTranspose")
    assert deconv.attrs["strides"] == [2, 2] and deconv.inputs[1].param.key == "up.weight"


def test_meta_device_llama_traces_without_weights() -> None:
    case = meta_llama(layers=2, hidden=512, heads=8, kv_heads=4, intermediate=1024, vocab=1000)
    graph = trace(case.model, case.inputs)
    verify(graph)
    params = list(graph.parameters())
    assert params and all(v.param.is_meta for v in params)
    assert len(graph.find("Linear")) == 7 * 2 + 1
    assert graph.outputs[0].shape == (1, 16, 1000)


def test_tied_embeddings_are_one_value_and_stay_tied_when_edited() -> None:
    case = tiny_case("gpt2")
    graph = trace(case.model, case.inputs)
    table = graph.find("Gather")[0].inputs[0]
    head = graph.outputs[0].producer.inputs[1]
    assert table is head and table.param.key == "transformer.wte.weight"
    assert table.param.binding.aliases == ("lm_head.weight",)
    table.param.data = table.param.data[:100]
    assert graph.module.lm_head.weight is graph.module.transformer.wte.weight
    assert graph.module.lm_head.weight.shape == (100, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["bloom", "gptj"])
def test_a_model_on_the_gpu_traces_where_constants_meet_its_buffers(name):
    """Constant folding creates tensors on the CPU; Bloom's ALiBi slopes and GPT-J's rotary table then met the
    model's GPU buffers in the next fold ("Expected all tensors to be on the same device", H100 sweep)."""
    from graphpress.testing.arch_zoo import arch_case

    case = arch_case(name)
    model = case.model.to("cuda")
    ids = case.inputs["input_ids"].to("cuda")
    graph = trace(model, (ids,), example_kwargs=dict(case.call_kwargs))
    assert graph.nodes


def test_use_cache_is_passed_only_to_models_that_take_it():
    """CLAP's forward takes ``**kwargs`` and hands them to an audio encoder that refuses ``use_cache``: the
    trace added ``use_cache=False`` to every ``**kwargs`` forward and failed ("unexpected keyword argument")."""
    from graphpress.testing.arch_zoo import arch_case

    case = arch_case("clap")
    graph = trace(case.model, case.inputs)
    assert len(graph.outputs) >= 2  # the image-text logits of both directions at least
