import torch

import graphpress
from graphpress.testing.zoo import tiny_case


def test_dict_example_inputs_become_keyword_arguments():
    case = tiny_case("bert")
    assert isinstance(case.inputs, dict)
    out, report = graphpress.optimize(case.model, "dce", example_inputs=case.inputs, return_report=True)
    assert type(out) is type(case.model)
    assert report.records[0].error_vs_previous == 0.0  # the check ran on the keyword inputs


def test_fold_bn_on_a_torch_cnn_is_exact_and_keeps_the_class():
    case = tiny_case("mobilenet")
    out = graphpress.optimize(case.model, "fold-bn", example_inputs=case.inputs)
    assert type(out) is type(case.model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in out.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in case.model.modules())
    with torch.no_grad():
        expected, actual = case.model(*case.inputs), out(*case.inputs)
    assert ((actual - expected).abs().max() / expected.abs().max()).item() <= 1e-5


def test_inplace_edits_the_users_object():
    case = tiny_case("mobilenet")
    model = case.model
    out = graphpress.optimize(model, "fold-bn", example_inputs=case.inputs, inplace=True)
    assert out is model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_inplace_compresses_the_object_itself_without_a_copy():
    case = tiny_case("llama")
    model = case.model
    embedding = model.model.embed_tokens.weight
    out = graphpress.optimize(model, "quantize{bits=4,group=32}", example_inputs=case.inputs,
                              example_kwargs=case.call_kwargs, inplace=True, rollback=False)
    assert out is model and out.model.embed_tokens.weight is embedding  # the same tensor: nothing was copied
