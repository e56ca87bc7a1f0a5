"""The ``sparsify`` and ``lower-sparse24`` passes: torch and ONNX models, option refusals, mask through export."""

import numpy as np
import pytest
import torch
from onnx import numpy_helper

import graphpress
from graphpress.backends.onnx import to_onnx
from graphpress.errors import GraphpressError, OptionError
from graphpress.passes.registry import create_pass
from graphpress.sparsity import parse_pattern, satisfies


@pytest.mark.parametrize("options", [
    {"ratio": 1.5}, {"ratio": 0.0}, {}, {"ratio": 0.5, "pattern": "2:4"}, {"pattern": "4:2"},
    {"pattern": "2:4", "allocation": "owl"}, {"ratio": 0.5, "method": "obs"}, {"ratio": 0.5, "allocation": "x"},
    {"ratio": 0.5, "typo": 1},
])
def test_bad_options_are_refused_before_any_work(options):
    with pytest.raises(OptionError):
        create_pass("sparsify", **options)


def test_calibrated_method_without_data_is_refused(tiny_llama):
    with pytest.raises(GraphpressError, match="calibration"):
        graphpress.optimize(tiny_llama, "sparsify{ratio=0.5,method=wanda}")


def test_optimize_sparsifies_a_torch_model_and_leaves_the_original(tiny_llama, calibration_tokens):
    result, report = graphpress.optimize(tiny_llama, "sparsify{pattern=2:4,method=sparsegpt}",
                                         calibration=calibration_tokens, return_report=True)
    stats = report.records[0].stats
    assert stats["layers"] == 14 and stats["overall_ratio"] == pytest.approx(0.5)
    pattern = parse_pattern(None, "2:4")
    for name, module in result.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            assert satisfies(module.weight, pattern), name
    assert (tiny_llama.model.layers[0].mlp.up_proj.weight != 0).all()


def test_mask_survives_onnx_export(tiny_llama, calibration_tokens):
    sparse = graphpress.optimize(tiny_llama, "sparsify{ratio=0.5,method=wanda}", calibration=calibration_tokens)
    graph = graphpress.trace(sparse, (torch.randint(0, 128, (1, 8)),))
    initializers = [numpy_helper.to_array(t) for t in to_onnx(graph).graph.initializer]
    for name, module in sparse.named_modules():
        if not isinstance(module, torch.nn.Linear) or name == "lm_head":
            continue
        weight = module.weight.detach().numpy()
        assert any(a.shape in (weight.shape, weight.T.shape) and
                   (np.array_equal(a, weight) or np.array_equal(a, weight.T)) for a in initializers), name


def test_onnx_model_gets_magnitude_sparsity(tiny_llama):
    dense = to_onnx(graphpress.trace(tiny_llama, (torch.randint(0, 128, (1, 8)),)))
    sparse, report = graphpress.optimize(dense, "sparsify{pattern=4:8,method=magnitude}", check=False,
                                         return_report=True)
    assert report.records[0].stats["layers"] == 14
    matrices = [numpy_helper.to_array(t) for t in sparse.graph.initializer]
    sparse_ones = [a for a in matrices if a.ndim == 2 and (a == 0).mean() >= 0.5]
    assert len(sparse_ones) == 14
    for array in sparse_ones:
        weight = torch.from_numpy(np.array(array))  # a writable copy
        assert satisfies(weight, parse_pattern(None, "4:8")) or satisfies(weight.T, parse_pattern(None, "4:8"))
    with pytest.raises(GraphpressError, match="ONNX"):
        graphpress.optimize(dense, "sparsify{ratio=0.5,method=wanda}", check=False)


def test_lower_sparse24_is_a_no_op_that_says_why_on_cpu(tiny_llama, calibration_tokens):
    result, report = graphpress.optimize(tiny_llama, "sparsify{pattern=2:4,method=magnitude},lower-sparse24",
                                         return_report=True)
    stats = report.records[1].stats
    if not torch.cuda.is_available():
        assert stats["lowered"] == 0 and "no CUDA" in stats["reason"]
    assert isinstance(result.model.layers[0].mlp.up_proj.weight, torch.nn.Parameter)


@pytest.mark.parametrize("rows,cols,dtype,tokens,lowered", [
    (4096, 4096, torch.float16, 2048, True),
    (11008, 4096, torch.bfloat16, 128, True),
    (4096, 4096, torch.float16, 1, False),  # decoding: the dense kernel wins
    (576, 576, torch.float16, 2048, False),  # too small
    (4096, 4100, torch.float16, 2048, False),  # not a tile multiple
    (4096, 4096, torch.float32, 2048, False),
])
def test_lowering_is_decided_by_shape_dtype_and_tokens(rows, cols, dtype, tokens, lowered):
    from graphpress.sparsity.lower24 import lowering_decision, shape_decision

    assert (shape_decision(rows, cols, dtype, tokens) is None) == lowered
    assert "CUDA" in lowering_decision(torch.zeros(8, 8), tokens)
