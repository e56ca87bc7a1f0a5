"""Hostile and broken ONNX files are refused with UnsafeFileError before graphpress acts on them (issue 9)."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphpress.backends.onnx import run_onnxruntime, save_onnx, to_onnx
from graphpress.errors import FrontendError, UnsafeFileError
from graphpress.frontends.onnx_import import load_onnx


def _linear_model(rows: int = 64, cols: int = 64) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((cols, rows)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", rows])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _write(path, payload: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(payload)
    return str(path)


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.97])
def test_truncated_file_is_refused(tmp_path, fraction):
    payload = _linear_model().SerializeToString()
    path = _write(tmp_path / "cut.onnx", payload[: int(len(payload) * fraction)])
    with pytest.raises(UnsafeFileError):
        load_onnx(path)


@pytest.mark.parametrize("payload", [b"", b"hello, I am not a model\n", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))])
def test_garbage_file_is_refused(tmp_path, payload):
    with pytest.raises(UnsafeFileError):
        load_onnx(_write(tmp_path / "junk.onnx", payload))


def test_cyclic_graph_is_refused():
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")],
        "cycle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(UnsafeFileError, match="cycle"):
        load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


def test_dangling_reference_is_refused():
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "ghost"], ["y"])],
        "dangling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(UnsafeFileError, match="ghost"):
        load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


def test_absurd_initializer_claim_is_refused():
    model = _linear_model()
    # Built by hand: onnx.helper itself refuses data that disagrees with the shape.
    huge = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[10**6, 10**6], raw_data=b"\0" * 16)
    model.graph.initializer.append(huge)
    with pytest.raises(UnsafeFileError, match="huge"):
        load_onnx(model)


def test_stored_bytes_disagreeing_with_shape_are_refused():
    model = _linear_model()
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:100]
    with pytest.raises(UnsafeFileError, match="truncated or corrupt"):
        load_onnx(model)


def _external_model(location: str) -> onnx.ModelProto:
    model = _linear_model(4, 4)
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "64"}.items():
        weight.external_data.add(key=key, value=value)
    return model


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../secret.bin", "..\\secret.bin", "C:\\secret.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    _write(tmp_path / "secret.bin", b"\1" * 64)
    path = folder / "model.onnx"
    onnx.save_model(_external_model(location), str(path))
    with pytest.raises(UnsafeFileError, match="outside"):
        load_onnx(path)


def test_external_data_through_an_escaping_symlink_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    _write(tmp_path / "secret.bin", b"\1" * 64)
    os.symlink(tmp_path / "secret.bin", folder / "weights.bin")
    onnx.save_model(_external_model("weights.bin"), str(folder / "model.onnx"))
    with pytest.raises(UnsafeFileError, match="resolves outside"):
        load_onnx(folder / "model.onnx")


def test_external_data_shorter_than_claimed_is_refused(tmp_path):
    _write(tmp_path / "weights.bin", b"\1" * 10)
    onnx.save_model(_external_model("weights.bin"), str(tmp_path / "model.onnx"))
    with pytest.raises(UnsafeFileError, match="holds only 10 bytes"):
        load_onnx(tmp_path / "model.onnx")


def test_external_data_in_memory_model_asks_for_the_path():
    with pytest.raises(FrontendError, match="pass the model's path"):
        load_onnx(_external_model("weights.bin"))


def test_safe_external_data_written_by_save_onnx_loads_back(tmp_path):
    graph = load_onnx(_linear_model())
    path = save_onnx(graph, tmp_path / "out" / "model.onnx", external_data=True)
    assert sorted(os.listdir(tmp_path / "out")) == ["model.onnx", "model.onnx.data"]  # no staging leftovers
    reloaded = load_onnx(path)
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(run_onnxruntime(reloaded, [x])[0], run_onnxruntime(_linear_model(), [x])[0], rtol=1e-5)


def test_unknown_domain_loads_marked_and_round_trips():
    graph_proto = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Frobnicate", ["r"], ["y"], domain="com.example", level=3)],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    graph = load_onnx(model)
    assert graph.metadata["unknown_ops"] == ["com.example::Frobnicate"]
    (custom,) = [n for n in graph.nodes if n.op == "Frobnicate"]
    assert custom.meta["unknown_op"] and custom.attrs == {"level": 3}
    assert graph.outputs[0].shape == (2, 3)  # the declared type survives shape inference
    emitted = to_onnx(graph)
    assert {(o.domain, o.version) for o in emitted.opset_import} >= {("com.example", 1), ("", 18)}
    assert emitted.graph.node[1].domain == "com.example"


def test_huge_constant_of_shape_is_not_materialized():
    shape = numpy_helper.from_array(np.array([10**6, 10**6], dtype=np.int64), "shape")
    graph_proto = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])],
        "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[shape],
    )
    graph = load_onnx(helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 18)]))
    assert [n.op for n in graph.nodes] == ["ConstantOfShape", "Add"]
    assert graph.outputs[0].shape == (10**6, 10**6)


def test_inconsistent_declared_types_load_with_the_problem_recorded():
    graph_proto = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "sloppy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2])],  # wrong: Relu of float is float
    )
    graph = load_onnx(helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 18)]))
    assert "shape inference failed" in graph.metadata["onnx_import"]["shape_inference_problem"]
    assert graph.outputs[0].shape == (2,)
