"""Every example runs end to end at a small size (the README promises one command each)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, suffix", [("compress_smollm2", ""), ("minilm_heads_onnx", ".onnx"),
                                          ("cnn_edge_onnx", ".onnx"), ("merge_checkpoints", "")])
def test_example_runs_tiny(tmp_path, name, suffix):
    output = tmp_path / f"out{suffix}"
    assert _load(name).main(["--tiny", "-o", str(output)]) == 0
    assert output.exists()


def test_custom_pass_example():
    from graphpress.passes.registry import unregister_pass

    try:
        assert _load("custom_pass").main() == 0
    finally:
        unregister_pass("scale-linear-weights")  # other tests compare the registry with the README
