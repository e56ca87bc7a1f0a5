"""Hostile and broken inputs beyond ONNX file structure: pipelines, non-finite weights, checkpoints, CLI.

Every refusal is a GraphpressError with a message that says what was wrong, the CLI exits non-zero, and
nothing is written where the output was asked for (not even a temporary file).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import graphpress
from graphpress.cli import main as cli_main
from graphpress.errors import GraphpressError, OptionError, PipelineError

PACKAGE = Path(graphpress.__file__).parent

INJECTIONS = [
    "dce;rm -rf /",
    "$(touch /tmp/graphpress_pwned)",
    "dce,`id`",
    "dce\nfold-bn",
    "dce\r\nfold-bn",
    "fold-bn{ratio=$(id)}",
    "prune-channels{ratio=0.3;ls}",
    "prune-channels{importance=__import__('os').system('id')}",
    "prune-channels{ratio=\"0.3; rm -rf ~\"}",
    "a" * 100_000,
    "dce," * 5000,
    "dcé",
    "\x00dce",
    "prune-channels{ratio=nan}",
    "prune-channels{ratio=1e309}",
    "no-such-pass",
    "prune-channels{no_such_option=1}",
]


def tiny_onnx(tmp_path: Path, poison: float | None = None) -> Path:
    """A two-Linear ONNX file written by graphpress; ``poison`` is put into the first weight."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    path = tmp_path / "model.onnx"
    graphpress.export_onnx(model, path, example_inputs=(torch.randn(2, 6),))
    if poison is not None:
        proto = onnx.load(path)
        init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        array = numpy_helper.to_array(init).copy()
        array.flat[3] = poison
        init.CopyFrom(numpy_helper.from_array(array, init.name))
        onnx.save(proto, path)
    return path


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("pipeline", INJECTIONS, ids=lambda s: repr(s[:24]))
def test_hostile_pipeline_strings_are_refused_before_any_work(pipeline):
    model = torch.nn.Linear(4, 4)
    with pytest.raises((PipelineError, OptionError)) as info:
        graphpress.optimize(model, pipeline, example_inputs=(torch.randn(1, 4),))
    message = str(info.value)
    assert len(message) < 1000, "a refusal must stay readable, not echo a huge input"
    assert not Path("/tmp/graphpress_pwned").exists()


@pytest.mark.parametrize("pipeline", ["dce;rm -rf /", "$(id)", "a" * 20_000, "dce\nfold-bn", "no-such-pass"],
                         ids=lambda s: repr(s[:16]))
def test_cli_refuses_hostile_pipeline_with_nonzero_exit_and_writes_nothing(tmp_path, pipeline, capsys):
    source = tiny_onnx(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = cli_main(["optimize", str(source), "-p", pipeline, "-o", str(out_dir / "small.onnx")])
    assert code != 0
    assert files_under(out_dir) == set()
    assert "error" in capsys.readouterr().err.lower()


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_torch_weights_are_refused_with_the_tensor_named(poison):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    with torch.no_grad():
        model[2].weight[1, 3] = poison
    with pytest.raises(GraphpressError, match=r"'2\.weight' holds 1 NaN/Inf"):
        graphpress.optimize(model, "dce", example_inputs=(torch.randn(1, 4),))


def test_non_finite_buffers_are_allowed_since_masks_hold_minus_inf():
    model = torch.nn.Linear(4, 4).eval()
    model.register_buffer("mask", torch.tensor([0.0, float("-inf"), 0.0, 0.0]))
    model.forward = lambda x: torch.nn.functional.linear(x, model.weight, model.bias) + model.mask.clamp(min=-1)
    graphpress.optimize(model, "dce", example_inputs=(torch.randn(1, 4),))


def test_onnx_masks_folded_into_initializers_may_hold_minus_inf(tmp_path):
    # The legacy exporter folds a causal mask into an initializer added to the scores: not a weight.
    model = torch.nn.Linear(4, 4).eval()
    path = tmp_path / "masked.onnx"
    graphpress.export_onnx(model, path, example_inputs=(torch.randn(4, 4),))
    proto = onnx.load(path)
    mask = np.triu(np.full((4, 4), -np.inf, dtype=np.float32), 1)
    proto.graph.initializer.append(numpy_helper.from_array(mask, "causal_mask"))
    last = proto.graph.output[0].name
    proto.graph.node.append(onnx.helper.make_node("Add", [last, "causal_mask"], ["masked"]))
    proto.graph.output[0].name = "masked"
    assert graphpress.optimize(proto, "dce").graph.initializer


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_cli_refuses_non_finite_onnx_weights_and_keeps_the_previous_output(tmp_path, capsys, poison):
    source = tiny_onnx(tmp_path, poison=poison)
    output = tmp_path / "out" / "small.onnx"
    output.parent.mkdir()
    output.write_bytes(b"previous output")
    code = cli_main(["optimize", str(source), "-p", "dce", "-o", str(output)])
    assert code != 0
    assert re.search(r"weight '.*' holds 1 NaN/Inf", capsys.readouterr().err)
    assert output.read_bytes() == b"previous output" and files_under(output.parent) == {"small.onnx"}


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage" * 10, b"PK\x03\x04 not a model"],
                         ids=["empty", "garbage", "zip"])
def test_cli_refuses_broken_onnx_and_torch_checkpoints(tmp_path, content, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in ("model.onnx", "weights.pt"):
        (tmp_path / name).write_bytes(content)
        code = cli_main(["optimize", str(tmp_path / name), "-p", "dce", "-o", str(out_dir / "small.onnx")])
        assert code != 0, name
        assert files_under(out_dir) == set()
    assert "weights_only=True" in capsys.readouterr().err  # the .pt refusal says how to load it safely


def test_cli_refuses_unknown_onnx_ops_and_domains(tmp_path, capsys):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    for domain, op in (("", "NoSuchOperator"), ("evil.domain", "Exec")):
        node = helper.make_node(op, ["x"], ["y"], domain=domain, name="n")
        opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(domain, 1)] if domain else [])
        model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)
        source = tmp_path / f"{op}.onnx"
        onnx.save(model, source)
        out_dir = tmp_path / f"out_{op}"
        out_dir.mkdir()
        assert cli_main(["optimize", str(source), "-p", "dce", "-o", str(out_dir / "o.onnx")]) != 0
        assert files_under(out_dir) == set()
        assert op in capsys.readouterr().err


def test_every_torch_load_in_the_package_uses_weights_only():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for match in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text(encoding="utf-8")):
            calls.append((path.name, match.group(1)))
    unsafe = [(name, args) for name, args in calls if "weights_only=True" not in args]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def _escaping_external_data(location: str) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": location, "offset": "0", "length": "64"}.items():
        weight.external_data.add(key=key, value=value)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _cyclic() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second")]
    graph = helper.make_graph(nodes, "cycle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("build,expected", [
    (lambda: _escaping_external_data("../../etc/passwd"), "outside"),
    (lambda: _escaping_external_data("/etc/passwd"), "outside"),
    (_cyclic, "cycle"),
], ids=["relative-escape", "absolute", "cycle"])
def test_cli_refuses_unsafe_onnx_with_nonzero_exit_and_writes_nothing(tmp_path, build, expected, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    source = folder / "model.onnx"
    onnx.save_model(build(), str(source))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = cli_main(["optimize", str(source), "-p", "dce", "-o", str(out_dir / "small.onnx"), "--repro",
                     str(out_dir / "repro")])
    assert code != 0
    assert expected in capsys.readouterr().err
    assert files_under(out_dir) == set()
