"""graphpress's ONNX entry points on files from exporters nobody listed: a sweep over how the file was made.

Sources (tiny models, random weights, from configs): the CNNs and the BERT / Llama configs of
graphpress.testing.zoo written by ``torch.onnx.export`` (legacy TorchScript and dynamo, opsets 9-20),
in float16, with external data, after onnxruntime's offline optimizer (basic and extended levels, which
write com.microsoft fused ops), graphs built with onnx.helper (graphpress.testing.onnx_handmade), and the
ONNX model zoo's classic CNNs that the onnx wheel carries (onnx-caffe2, opset 9, IR 3; random weights put in
place of their constant ones by graphpress.testing.onnx_model_zoo; their Softmax's input is added as a
second output and the quantized rows are checked on it, since a random network's probabilities magnify
any logit error).

Each file goes through ``graphpress.optimize(path, pipeline)`` for three pipelines (prune-channels, int4
MatMulNBits, int8 QDQ) and through the CLI (``graphpress optimize FILE -p prune-channels{ratio=0.3} -o
OUT``, in process), and the result is checked: onnx.checker (full), onnxruntime runs it, the output shapes
match the original's, the pruned ratio is reported, quantized outputs stay close to the original's, and
the input file is byte-for-byte unchanged. A refusal (a GraphpressError naming what is unsupported, with
no output written) counts as handled, not as a pass.

    PYTHONPATH=. python benchmarks/onnx_sweep.py [--only SUBSTRING]   # writes benchmarks/results/onnx_sweep.md

``--folder DIR`` sweeps the ONNX files of a folder instead (your own, or those ``benchmarks/foreign_onnx_files.py``
writes with tf2onnx and paddle2onnx): each file is copied with its external data into a scratch folder first, and fed the
arrays of a ``.npz`` of the same name beside it when there is one, else random inputs of its declared shapes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import graphpress  # noqa: E402
from graphpress.errors import GraphpressError  # noqa: E402
from graphpress.testing.compare import fed_inputs  # noqa: E402
from graphpress.testing.onnx_exporters import export_torch, ort_optimize, save_external  # noqa: E402
from graphpress.testing.onnx_handmade import HANDMADE  # noqa: E402
from graphpress.testing.onnx_model_zoo import light_model_paths, materialize_weights, model_inputs  # noqa: E402
from graphpress.testing.results import markdown_cell, publish_lines, sweep_arguments  # noqa: E402
from graphpress.testing.zoo import tiny_case  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "onnx_sweep.md")

PIPELINES = {
    "prune": "prune-channels{ratio=0.3}",
    "int4": "quantize{bits=4,group=32}",
    "int8-qdq": "quantize{bits=8,group=0,act_bits=8}",
}
TOLERANCE = {"int4": 0.25, "int8-qdq": 0.1}
"""Largest max|quantized - original| / max|original| accepted (random tiny weights; int8 QDQ runs on
onnxruntime's own int8 kernels with activations quantized its way)."""


@dataclass
class Source:
    """One ONNX file to sweep: ``make(folder)`` writes it and returns (path, inputs by name)."""

    name: str
    how: str
    make: Callable[[str], tuple[str, dict[str, np.ndarray]]]
    checked_output: int = 0


@dataclass
class Outcome:
    status: str  # ok | frozen (ran, nothing prunable, the reason reported) | refused | FAIL
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    def cell(self) -> str:
        text = self.status if not self.detail else f"{self.status}: {self.detail}"
        return markdown_cell(text[:160])


def _exported(model: str, *, dynamo: bool, opset: int, fp16: bool = False, external: bool = False):
    def make(folder: str):
        path = os.path.join(folder, "model.onnx")
        inputs = export_torch(tiny_case(model), path, dynamo=dynamo, opset=opset, fp16=fp16, external_data=external)
        return path, inputs
    return make


def _ort_optimized(model: str, level: str, *, dynamo: bool = False, opset: int = 17):
    def make(folder: str):
        source = os.path.join(folder, "source.onnx")
        inputs = export_torch(tiny_case(model), source, dynamo=dynamo, opset=opset)
        path = os.path.join(folder, "model.onnx")
        ort_optimize(source, path, level)
        os.unlink(source)
        return path, inputs
    return make


def _handmade(name: str, external: bool = False):
    def make(folder: str):
        model, inputs = HANDMADE[name]()
        path = os.path.join(folder, "model.onnx")
        onnx.save_model(model, path)
        if external:
            save_external(path, path)
        return path, inputs
    return make


def _model_zoo(name: str):
    def make(folder: str):
        model = materialize_weights(onnx.load(light_model_paths()[name]))
        softmax = [n for n in model.graph.node if n.op_type == "Softmax"]
        if softmax:
            model.graph.output.append(onnx.helper.make_tensor_value_info(softmax[-1].input[0], onnx.TensorProto.FLOAT, None))
        path = os.path.join(folder, "model.onnx")
        onnx.save_model(model, path)
        return path, model_inputs(model)
    return make


def _declared_inputs(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Random inputs of the declared shapes (unknown dims 1): floats standard normal, integers 0 or 1 (valid
    ids for any vocabulary), booleans False."""
    rng = np.random.default_rng(seed)
    out = {}
    for value in fed_inputs(model.graph):
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if np.issubdtype(dtype, np.floating):
            out[value.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            out[value.name] = np.zeros(shape, dtype=dtype)
        else:
            out[value.name] = rng.integers(0, 2, shape).astype(dtype)
    return out


def _from_folder(path: str):
    def make(folder: str):
        model = onnx.load(path, load_external_data=False)
        shutil.copy(path, folder)
        for tensor in model.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                location = next(e.value for e in tensor.external_data if e.key == "location")
                target = os.path.join(folder, location)
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy(os.path.join(os.path.dirname(path), location), target)
        feeds = os.path.splitext(path)[0] + ".npz"
        inputs = dict(np.load(feeds)) if os.path.exists(feeds) else _declared_inputs(model)
        return os.path.join(folder, os.path.basename(path)), inputs
    return make


def folder_sources(folder: str) -> list[Source]:
    """One source per ``.onnx`` file of ``folder``, in name order."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".onnx"))
    return [Source(os.path.splitext(n)[0], f"file in {folder}", _from_folder(os.path.join(folder, n))) for n in names]


def sources() -> list[Source]:
    """Every file of the sweep, in table order."""
    out: list[Source] = []
    for model in ("resnet", "mobilenet", "bert", "llama"):
        out += [
            Source(f"{model}", "legacy opset 9", _exported(model, dynamo=False, opset=9)),
            Source(f"{model}", "legacy opset 11", _exported(model, dynamo=False, opset=11)),
            Source(f"{model}", "legacy opset 13", _exported(model, dynamo=False, opset=13)),
            Source(f"{model}", "legacy opset 17", _exported(model, dynamo=False, opset=17)),
            Source(f"{model}", "dynamo opset 18", _exported(model, dynamo=True, opset=18)),
            Source(f"{model}", "dynamo opset 20", _exported(model, dynamo=True, opset=20)),
            Source(f"{model}", "legacy opset 17 fp16", _exported(model, dynamo=False, opset=17, fp16=True)),
            Source(f"{model}", "dynamo opset 18 fp16", _exported(model, dynamo=True, opset=18, fp16=True)),
            Source(f"{model}", "dynamo opset 18 external data", _exported(model, dynamo=True, opset=18, external=True)),
            Source(f"{model}", "legacy opset 17 external data", _exported(model, dynamo=False, opset=17, external=True)),
            Source(f"{model}", "ort basic (legacy 17)", _ort_optimized(model, "basic")),
            Source(f"{model}", "ort extended (legacy 17)", _ort_optimized(model, "extended")),
            Source(f"{model}", "ort extended (dynamo 18)", _ort_optimized(model, "extended", dynamo=True, opset=18)),
        ]
    for name in HANDMADE:
        out.append(Source(name, "onnx.helper opset 18", _handmade(name)))
    out.append(Source("shared-initializer", "onnx.helper, external data", _handmade("shared-initializer", True)))
    for name in light_model_paths():
        out.append(Source(name, "onnx model zoo (onnx-caffe2)", _model_zoo(name), checked_output=-1))
    return out


def _digest(folder: str) -> dict[str, str]:
    """Hashes of every file in ``folder`` (the model and its external data)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            out[name] = hashlib.sha256(handle.read()).hexdigest()
    return out


def _run(model, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    payload = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: inputs[n] for n in names})


def _rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    return float(np.abs(a - e).max() / max(np.abs(e).max(), 1e-12))


def _parameters(model) -> int:
    """Elements of the float initializers of a ModelProto or a file (its external data not read)."""
    if isinstance(model, str):
        model = onnx.load(model, load_external_data=False)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node if n.op_type == "Constant"
                                               for a in n.attribute if a.name == "value"]
    return sum(int(np.prod(t.dims)) for t in tensors if t.data_type in floats)


def _check_output(model, inputs, reference: list[np.ndarray], kind: str, report, source: str,
                  checked: int = 0) -> Outcome:
    """The shared checks of one result (a ModelProto or a written path)."""
    onnx.checker.check_model(model, full_check=True)
    outputs = _run(model, inputs)
    shapes = [o.shape for o in outputs]
    if shapes != [r.shape for r in reference]:
        return Outcome("FAIL", f"output shapes {shapes} != {[r.shape for r in reference]}")
    if not all(np.isfinite(o).all() for o in outputs if o.dtype.kind == "f"):
        return Outcome("FAIL", "non-finite outputs")
    if kind == "prune":
        if report is None:  # the CLI: the parameters the written file lost
            lost = 1 - _parameters(model) / max(_parameters(source), 1)
            return Outcome("ok" if lost > 0.05 else "frozen", f"params {-lost:+.2f}")
        stats = report.records[-1].stats
        ratio = stats.get("achieved_ratio")
        if ratio is None:
            return Outcome("FAIL", f"no achieved_ratio reported ({stats})")
        if ratio < 0.05:
            return Outcome("frozen", f"pruned {ratio:.2f}; frozen by {stats.get('frozen_by', 'shapes (inspect --groups)')}")
        return Outcome("ok", f"pruned {ratio:.2f}")
    error = _rel_error(outputs[checked], reference[checked])
    if kind in TOLERANCE and error > TOLERANCE[kind]:
        return Outcome("FAIL", f"rel err {error:.3f} > {TOLERANCE[kind]}")
    return Outcome("ok", f"err {error:.3f}")


def _api(path: str, inputs, reference, kind: str, checked: int = 0) -> Outcome:
    pipeline = PIPELINES[kind]
    names = [i.name for i in fed_inputs(onnx.load(path, load_external_data=False).graph)]
    import torch

    example = tuple(torch.from_numpy(inputs[n]) for n in names)
    result, report = graphpress.optimize(path, pipeline, example_inputs=example, return_report=True)
    outcome = _check_output(result, inputs, reference, kind, report, path, checked)
    if kind != "prune":
        ops = {n.op_type for n in result.graph.node}
        quantized = "MatMulNBits" in ops or "DequantizeLinear" in ops
        if not quantized:
            outcome.detail += " (nothing quantized)"
    return outcome


def _cli(path: str, inputs, reference, folder: str) -> Outcome:
    from graphpress.cli import main

    out = os.path.join(folder, "cli_out", "pruned.onnx")
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = main(["--quiet", "optimize", path, "-p", PIPELINES["prune"], "-o", out])
    if code != 0:
        written = os.path.exists(out)
        message = stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {code}"
        return Outcome("FAIL" if written else "refused", ("WROTE OUTPUT; " if written else "") + message)
    return _check_output(out, inputs, reference, "prune", None, path)


def _guard(action: Callable[[], Outcome]) -> Outcome:
    try:
        return action()
    except GraphpressError as exc:
        return Outcome("refused", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    except Exception as exc:  # noqa: BLE001 - a crash is what the sweep is looking for
        return Outcome("FAIL", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def sweep_one(source: Source) -> dict[str, Outcome | str]:
    """Write one source file and run every entry point on it."""
    row: dict[str, Outcome | str] = {"source": source.name, "how": source.how}
    with tempfile.TemporaryDirectory(prefix="onnx-sweep-") as root:
        folder = os.path.join(root, "in")
        os.makedirs(folder)
        try:
            path, inputs = source.make(folder)
            reference = _run(path, inputs)
        except Exception as exc:  # noqa: BLE001 - the exporter itself failed: not graphpress's row
            row["export"] = Outcome("n/a", f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
            return row
        model = onnx.load(path, load_external_data=False)
        domains = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
        row["file"] = f"opset {opset}, {len(model.graph.node)} nodes" + (f", {'/'.join(domains)}" if domains else "")
        before = _digest(folder)
        for kind in PIPELINES:
            row[kind] = _guard(lambda kind=kind: _api(path, inputs, reference, kind, source.checked_output))
        row["cli prune"] = _guard(lambda: _cli(path, inputs, reference, root))
        if _digest(folder) != before:
            row["cli prune"] = Outcome("FAIL", "the input file was modified")
    return row


def table(rows: list[dict]) -> list[str]:
    columns = ["source", "how", "file", *PIPELINES, "cli prune"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if "export" in row:
            cells = [row["source"], row["how"], row["export"].cell()] + ["-"] * (len(columns) - 3)
        else:
            cells = [row["source"], row["how"], row["file"]] + [row[k].cell() for k in [*PIPELINES, "cli prune"]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = sweep_arguments(__doc__, RESULTS, "sweep only sources whose name or description contains this")
    parser.add_argument("--folder", help="sweep the .onnx files of this folder instead of the built-in sources")
    args = parser.parse_args()
    if args.folder and args.output == RESULTS:
        parser.error("--folder writes elsewhere than the built-in sweep's results: give --output")
    warnings.filterwarnings("ignore")
    started = time.time()
    rows = []
    for source in folder_sources(args.folder) if args.folder else sources():
        if args.only and args.only not in f"{source.name} {source.how}":
            continue
        rows.append(sweep_one(source))
        print(" | ".join(v.cell() if isinstance(v, Outcome) else v for v in rows[-1].values()), file=sys.stderr)
    results = [v for r in rows for k, v in r.items() if isinstance(v, Outcome) and k != "export"]
    counts = {s: sum(o.status == s for o in results) for s in ("ok", "frozen", "refused", "FAIL")}
    import onnxruntime
    import torch

    lines = [
        "# ONNX files from other exporters through graphpress",
        "",
        f"`PYTHONPATH=. python benchmarks/onnx_sweep.py{' --folder ' + args.folder if args.folder else ''}` "
        f"({time.time() - started:.0f} s; torch {torch.__version__}, "
        f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}; CPU).",
        "",
        "Each result must pass `onnx.checker` (full), run in onnxruntime with the original's output shapes; "
        "prune reports the achieved parameter ratio, quantized outputs must stay within "
        f"{TOLERANCE} (max abs error / max abs output) of the original file's. `refused` = a GraphpressError "
        "naming the unsupported feature, nothing written, the input untouched; `frozen` = the pass ran, but every "
        "channel was frozen and the report names why (ops without coupling rules, shapes computed at run time).",
        "",
        f"**{counts['ok']} ok, {counts['frozen']} frozen, {counts['refused']} refused, {counts['FAIL']} failed.**",
        "",
        *table(rows),
    ]
    if args.folder:
        publish_lines(args.output, lines)
        return
    lines += [
        "",
        "## Known limitations (not fixed yet)",
        "",
        "- onnxruntime `extended` files: the `com.microsoft` fused ops FusedConv, FusedGemm, FusedMatMul, Gelu, "
        "FastGelu, BiasGelu, QuickGelu, BiasAdd and Skip(Simplified)LayerNormalization couple like the ops they "
        "fuse and are sized by standard stand-ins for shape inference, so these files prune like their sources "
        "and the written file keeps the fused ops. Fused attention (Attention, MultiHeadAttention, "
        "GroupQueryAttention, ...) packs heads into one weight: it stays whole, named in `frozen_by`; other "
        "com.microsoft ops have no rule and freeze what flows through them (also named). "
        "`SimplifiedLayerNormalization` (default domain) is rewritten to standard ops; any other default-domain "
        "op ONNX does not define is refused at load with its name.",
        "- Shapes computed at run time: a Reshape's target written as `concat(gather(shape(x), ...), [C])` "
        "(the legacy exporter with dynamic axes, tf2onnx's Dense on a sequence) has its constant pieces "
        "rewritten when channels shrink (a Concat several reshapes share is copied first), and a `-1` dim ONNX "
        "inference leaves unknown is sized from the element count, so `dynamic-reshape` prunes whole heads. "
        "Still frozen, with the reason named: heads merged with the batch into one run-time dim, as tf2onnx "
        "writes Keras `MultiHeadAttention`'s einsums (`[b, 4, 1, 8, 12] -> [?, ?, 12]`); its feed-forward "
        "layers prune (tests/onnx_io/test_onnx_io_keras.py, files made by tf2onnx 1.17 from Keras 3).",
        "- Files from Hugging Face's exporter (optimum-onnx 0.1; tests/onnx_io/test_onnx_io_optimum.py): a GPT-2 "
        "with its cache as inputs and a ViT with symbolic channels and sides prune and quantize with no example "
        "inputs given; the inputs graphpress makes up take their sizes from the weights a symbol meets, evaluate "
        "`past_sequence_length + sequence_length`, and try sizes for the rest until the model runs.",
        "- Shared weights: every reader of one initializer, directly or through a `Transpose` or "
        "`Identity` node, reads one stored tensor, so pruning keeps the same channels for all of them and writes "
        "the tensor once (`shared-block`, ALBERT-style layer sharing, and `tied-embedding` prune by the ratio). "
        "`shared-initializer` stays `frozen`: both axes of its W reach the graph's input and output, so a tied "
        "W cannot shrink (before the fix it grew the file by 64%). Still copied per reader, so pruned apart: a "
        "shared weight a reader reads scaled (`Gemm` with alpha != 1 or beta != 1) or through any other "
        "computation; and, on purpose, a shared tensor whose elements are all equal (the dynamo exporter writes "
        "one initializer for all equal constants, e.g. the zero biases of a fresh model), whose copies are small.",
        "- The ONNX model zoo's CNNs (onnx-caffe2, opset 9, IR 3, from the onnx wheel, random weights): all nine "
        "prune, quantize and run. Grouped convolutions with few wide groups (AlexNet's and ZFNet's 2, "
        "ShuffleNet's 4) prune by positions within the groups, so `group` stays and the groups stay equal. "
        "ShuffleNet v1 still prunes coarsely (0.50 for a ratio of 0.3, reported in `rounding`): its stage "
        "transitions concatenate a pooled shortcut and a branch of other widths, so 'position j of every group' "
        "chains the whole residual stream into 2 units; equal counts per group without equal positions would "
        "need count constraints the union-find coupling cannot state. LRN mixes neighbouring channels and has "
        "no coupling rule: the channels through it (AlexNet's, GoogLeNet's first two convs) stay whole and the "
        "pass says so. DenseNet and SqueezeNet have no linear layer: `quantize` covers linear layers and warns "
        "when convolutions hold most of the weights. Their quantized rows are checked on the logits (the "
        "Softmax's input), not on the probabilities.",
        "- `n/a` rows: the exporter or onnxruntime itself failed to produce or load the file (not graphpress).",
    ]
    publish_lines(args.output, lines)


if __name__ == "__main__":
    main()
