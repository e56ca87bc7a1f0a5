"""The pass manager's guarantees, on ONNX models built here: numeric checks, rollback, reproducers."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import graphpress
from graphpress.errors import PassError
from graphpress.passes import Pass, PassResult
from graphpress.passes.registry import register_pass, unregister_pass


def _conv_bn_model(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
        numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "var"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(nodes, "convbn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_fold_bn_on_onnx_is_exact_and_removes_the_batchnorm():
    model = _conv_bn_model()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    folded, report = graphpress.optimize(model, "fold-bn,dce", return_report=True)
    assert [n.op_type for n in folded.graph.node].count("BatchNormalization") == 0
    expected, actual = _run(model, x), _run(folded, x)
    assert np.abs(actual - expected).max() / np.abs(expected).max() <= 1e-5
    assert report.records[0].stats["batchnorms_folded"] == 1
    assert report.records[0].error_vs_previous <= 1e-5


class _CorruptingPass(Pass):
    name = "test-corrupt-weights"
    summary = "test only: scales a weight but claims to be exact"
    exact = True

    def call(self, graph, ctx):
        for value in graph.parameters():
            value.param.data = value.param.data * 3
        return PassResult(graph, True)


class _CrashingPass(Pass):
    name = "test-crash"
    summary = "test only: edits the graph, then raises"

    def call(self, graph, ctx):
        for value in graph.parameters():
            value.param.data = value.param.data * 0
        graph.nodes.clear()
        raise RuntimeError("boom in the middle of an edit")


@pytest.fixture(autouse=True)
def _test_passes():
    """Register the throwaway passes only while this module's tests run (other tests list the registry)."""
    for cls in (_CorruptingPass, _CrashingPass):
        register_pass(cls)
    yield
    for cls in (_CorruptingPass, _CrashingPass):
        unregister_pass(cls.name)


def _params(graph):
    return {v.param.key: v.param.data.clone() for v in graph.parameters()}


def test_an_exact_pass_that_changes_outputs_is_rolled_back():
    from graphpress.api import optimize_graph, random_inputs_for
    from graphpress.passes import PassContext

    graph = graphpress.load_onnx(_conv_bn_model())
    before, n_nodes = _params(graph), len(graph.nodes)
    ctx = PassContext(example_inputs=random_inputs_for(graph))
    with pytest.raises(PassError, match="claims to be exact"):
        optimize_graph(graph, "dce,test-corrupt-weights", ctx)
    after = _params(graph)
    assert len(graph.nodes) == n_nodes and before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_crashing_pass_is_rolled_back_named_and_leaves_a_reproducer(tmp_path):
    from graphpress.api import optimize_graph, random_inputs_for
    from graphpress.passes import PassContext

    graph = graphpress.load_onnx(_conv_bn_model())
    n_nodes = len(graph.nodes)
    repro = tmp_path / "repro"
    ctx = PassContext(example_inputs=random_inputs_for(graph), repro_dir=str(repro))
    with pytest.raises(PassError) as info:
        optimize_graph(graph, "fold-bn,test-crash", ctx)
    message = str(info.value)
    assert "test-crash" in message and "boom" in message and "passes that ran before it: fold-bn" in message
    assert len(graph.nodes) == n_nodes - 1  # fold-bn's work stays, the crash's is undone
    assert all(v.abs().sum() > 0 for v in _params(graph).values())  # the crash zeroed them; rollback restored
    assert (repro / "pipeline.txt").read_text().strip() == "test-crash"
    assert json.loads((repro / "info.json").read_text())["ran_before"] == ["fold-bn"]
    assert graphpress.load_onnx(str(repro / "graph.onnx")).find("Conv")


def test_without_restore_the_failed_graph_stays_but_the_reproducer_holds_the_pass_input(tmp_path):
    """``restore_on_failure=False`` (a caller that restores from its own copy): no restore, yet the reproducer is
    written from the snapshot, the graph as the failing pass received it."""
    from graphpress.api import optimize_graph, random_inputs_for
    from graphpress.passes import PassContext

    graph = graphpress.load_onnx(_conv_bn_model())
    repro = tmp_path / "repro"
    ctx = PassContext(example_inputs=random_inputs_for(graph), repro_dir=str(repro), restore_on_failure=False)
    with pytest.raises(PassError) as info:
        optimize_graph(graph, "test-crash", ctx)
    assert "rolled back" not in str(info.value)
    assert all(v.abs().sum() == 0 for v in _params(graph).values())  # left as the crash left it
    written = graphpress.load_onnx(str(repro / "graph.onnx"))
    assert all(v.abs().sum() > 0 for v in _params(written).values())


def test_optimize_onnx_path_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_conv_bn_model(), path)
    data = path.read_bytes()
    with pytest.raises(PassError):
        graphpress.optimize(str(path), "fold-bn,test-crash")
    assert path.read_bytes() == data


def test_an_exact_rewrite_of_a_bfloat16_model_is_judged_in_float32(monkeypatch):
    """In a deep half-precision model a reordered sum moves outputs by percents; the manager then runs the
    model before and after the pass in float32, where an exact rewrite agrees and a wrong one does not."""
    from graphpress.passes import manager
    from graphpress.testing.zoo import tiny_case

    monkeypatch.setitem(manager._EXACT_RTOL, torch.bfloat16, -1.0)  # every bfloat16 change "fails" its dtype check
    case = tiny_case("llama")
    model = case.model.to(torch.bfloat16)
    fused, report = graphpress.optimize(model, "fuse-qkv", example_inputs=case.inputs,
                                        example_kwargs=case.call_kwargs, return_report=True)
    assert "with the model in float32: rounding" in report.records[0].stats["exactness"]
    assert all(p.dtype == torch.bfloat16 for p in fused.parameters())  # put back in its own dtype
    with pytest.raises(PassError, match=r"claims to be exact .*in float32"):
        graphpress.optimize(model, "test-corrupt-weights", example_inputs=case.inputs, example_kwargs=case.call_kwargs)
