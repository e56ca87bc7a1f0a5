"""The ONNX model zoo's ShuffleNet v1 (onnx-caffe2, opset 9, IR 3), as the onnx wheel ships it, with random weights.

Its 4-group pointwise convolutions and channel shuffles (``Reshape [N, 4, C/4, H, W] -> Transpose ->
Reshape``) froze every channel while grouped convolutions pruned only by whole groups. With positions
within the groups as units it prunes, keeps ``group = 4`` on them (depthwise ones follow their channels),
and runs in onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import graphpress
from graphpress.testing import run_onnx
from graphpress.testing.onnx_model_zoo import light_model_paths, materialize_weights, model_inputs


@pytest.fixture(scope="module")
def shufflenet(tmp_path_factory) -> tuple[str, dict[str, np.ndarray]]:
    paths = light_model_paths()
    if "shufflenet" not in paths:
        pytest.skip("this onnx wheel carries no light model zoo files")
    model = materialize_weights(onnx.load(paths["shufflenet"]))
    path = str(tmp_path_factory.mktemp("zoo") / "shufflenet.onnx")
    onnx.save_model(model, path)
    return path, model_inputs(model)


def _few_wide_groups(model: onnx.ModelProto) -> list[int]:
    """``group`` of every grouped, not depthwise, convolution (several input channels per group)."""
    widths = {t.name: t.dims[1] for t in model.graph.initializer if len(t.dims) == 4}
    return [a.i for n in model.graph.node if n.op_type == "Conv" and widths[n.input[1]] > 1
            for a in n.attribute if a.name == "group" and a.i > 1]


def test_materialized_weights_are_random_initializers_listed_as_inputs(shufflenet) -> None:
    path, inputs = shufflenet
    model = onnx.load(path)
    assert not any(n.op_type == "ConstantOfShape" for n in model.graph.node)
    weights = {t.name for t in model.graph.initializer}
    assert weights <= {i.name for i in model.graph.input}  # IR 3 habit kept
    assert list(inputs) == ["gpu_0/data_0"]
    first = onnx.numpy_helper.to_array(model.graph.initializer[-1])
    assert first.std() > 0  # no longer one value


def test_shufflenet_prunes_through_grouped_convs_and_channel_shuffles(shufflenet) -> None:
    path, inputs = shufflenet
    source = onnx.load(path)
    pruned, report = graphpress.optimize(path, "prune-channels{ratio=0.3}", return_report=True,
                                         example_inputs=(torch.from_numpy(inputs["gpu_0/data_0"]),))
    onnx.checker.check_model(pruned, full_check=True)
    assert report.records[-1].stats["achieved_ratio"] > 0.2
    assert _few_wide_groups(pruned) == _few_wide_groups(source) and len(_few_wide_groups(source)) > 20
    pointwise = [t for t in pruned.graph.initializer if t.name.endswith("gconv1_5_w_0")][0]
    assert pointwise.dims[1] < 68  # 4 groups of 68 inputs before
    expected, actual = run_onnx(source, *inputs.values()), run_onnx(pruned, *inputs.values())
    assert actual.shape == expected.shape and np.isfinite(actual).all()


def test_a_weight_stripped_file_keeps_its_size_through_a_pass() -> None:
    """The zoo files store each weight as ``ConstantOfShape`` of one value. Folded to constants for the passes,
    they are written back as that node while their elements stay equal: the file keeps its 15 KB instead of
    the 5 MB of SqueezeNet's materialized floats, and computes the same outputs."""
    paths = light_model_paths()
    if "squeezenet" not in paths:
        pytest.skip("this onnx wheel carries no light model zoo files")
    source = onnx.load(paths["squeezenet"])
    written = graphpress.optimize(paths["squeezenet"], "dce")
    onnx.checker.check_model(written, full_check=True)
    filled = sum(n.op_type == "ConstantOfShape" for n in source.graph.node)
    assert sum(n.op_type == "ConstantOfShape" for n in written.graph.node) == filled > 20
    assert written.ByteSize() < 1.2 * source.ByteSize()
    inputs = model_inputs(source)
    np.testing.assert_allclose(run_onnx(written, *inputs.values()), run_onnx(source, *inputs.values()), rtol=1e-5)
