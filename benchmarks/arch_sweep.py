"""Sweep graphpress over Hugging Face architectures nobody tuned it for: each one built tiny from its config class
(random weights, 2 layers, small widths; ``graphpress.testing.arch_zoo``), then on the torch path

1. ``prune-channels{ratio=0.3}``: the achieved ratio must be 0.27-0.33, the class and output shapes kept, the
   pruned model must run, and its ONNX export (graphpress.export_onnx, onnxruntime) must match it to 1e-4;
2. ``quantize{bits=8,group=0}`` (W8 weight-only RTN, per output channel): the model must run and its first
   output stay within 3% (relative max error) of the original's.

    PYTHONPATH=. python benchmarks/arch_sweep.py [--only opt,bloom] [--timeout 300]

Each architecture runs in its own child process (``--one NAME``), so a crash or a hang is one row's error, not
the sweep's end. Writes benchmarks/results/arch_sweep.md (``--output`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

RESULTS = os.path.join(os.path.dirname(__file__), "results", "arch_sweep.md")
PRUNE = "prune-channels{ratio=0.3}"
QUANT = "quantize{bits=8,group=0}"
RATIO_RANGE = (0.27, 0.33)
ONNX_TOLERANCE = 1e-4
QUANT_TOLERANCE = 3e-2


def checks_sentence() -> str:
    """What the two checks of a sweep row are (the results header of every zoo sweep says it)."""
    return (f"Prune: `{PRUNE}` on the torch path; ok = ratio in {RATIO_RANGE[0]}-{RATIO_RANGE[1]}, class and output "
            f"shapes kept, ONNX export of the pruned model within {ONNX_TOLERANCE:g} (relative max error). Quant: "
            f"`{QUANT}`; ok = first output within {QUANT_TOLERANCE:g} of the original's (convolution-only models "
            "have no linears to quantize).")


def short(error: BaseException) -> str:
    """``Type: first line of the message`` (the message's first line names the problem in graphpress errors)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


def relative(got, want) -> float:
    """Relative max error; integer outputs (EnCodec's codes) count only when equal (0) or not (inf)."""
    from graphpress.backends.evaluate import relative_error

    return relative_error([got], [want])


def sweep_built(name: str, build) -> dict:
    """Build one case with ``build(name)`` and check it (``check_case``); a failed build is the row's error."""
    import torch

    torch.set_num_threads(1)
    row: dict = {"name": name, "errors": []}
    try:
        case = build(name)
    except Exception as error:  # noqa: BLE001 (a row's error, not the sweep's)
        row["errors"].append("build: " + short(error))
        return row
    return check_case(case, row)


def sweep_one(name: str) -> dict:
    """Trace, prune and quantize one architecture; a dict of what happened (the row of the table)."""
    from graphpress.testing.arch_zoo import arch_case

    return sweep_built(name, arch_case)


def check_case(case, row: dict, ratio_range: tuple[float, float] = RATIO_RANGE) -> dict:
    """Trace ``case`` (a :class:`~graphpress.testing.zoo.ZooCase`), prune and quantize it, and fill ``row`` with
    what happened: the checks every zoo sweep shares (this one and ``vision_zoo_sweep.py``)."""
    import graphpress
    from graphpress.frontends.torch_export import trace
    from graphpress.testing.zoo_checks import call_case, onnx_matches, optimize_kwargs

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # the pass manager deep-copies graphs
    start = time.perf_counter()
    row["model"] = type(case.model).__name__
    kwargs = optimize_kwargs(case)
    try:
        reference = call_case(case.model, case)
    except Exception as error:  # noqa: BLE001 (the model fails on its own example inputs)
        row["errors"].append("run: " + short(error))
        return row
    try:
        trace(case.model, tuple(kwargs["example_inputs"]), example_kwargs=kwargs.get("example_kwargs"))
        row["trace"] = True
    except Exception as error:  # noqa: BLE001
        row["trace"] = False
        row["errors"].append("trace: " + short(error))
        row["seconds"] = time.perf_counter() - start
        return row
    try:
        pruned, report = graphpress.optimize(case.model, PRUNE, return_report=True, **kwargs)
        stats = report.records[-1].stats
        row["ratio"] = float(stats.get("achieved_ratio", 0.0))
        row["frozen"] = _frozen_summary(stats)
        row["recover_trials"] = int(stats.get("recover_trials", 0))
        row["size_repairs"] = list(stats.get("size_repairs", []))
        row["width_ties"] = list(stats.get("width_ties", []))
        problems = []
        if type(pruned) is not type(case.model):
            problems.append(f"class became {type(pruned).__name__}")
        shapes = [tuple(o.shape) for o in call_case(pruned, case)]
        if shapes != [tuple(o.shape) for o in reference]:
            problems.append(f"output shapes changed to {shapes}")
        if not ratio_range[0] <= row["ratio"] <= ratio_range[1]:
            problems.append(f"ratio {row['ratio']:.3f} outside {ratio_range}")
        row["parity"] = onnx_matches(pruned, case)
        if not row["parity"] <= ONNX_TOLERANCE:
            problems.append(f"onnx parity {row['parity']:.2e}")
        row["prune_ok"] = not problems
        row["errors"] += ["prune: " + p for p in problems]
    except Exception as error:  # noqa: BLE001
        row["prune_ok"] = False
        row["errors"].append("prune: " + short(error))
        if os.environ.get("ARCH_SWEEP_TRACEBACK"):
            traceback.print_exc()
    try:
        quantized, report = graphpress.optimize(case.model, QUANT, return_report=True, **kwargs)
        row["quant_layers"] = int(report.records[-1].stats.get("layers", 0))
        row["quant_error"] = relative(call_case(quantized, case)[0], reference[0])
        row["quant_ok"] = row["quant_error"] <= QUANT_TOLERANCE
        if not row["quant_ok"]:
            row["errors"].append(f"quant: relative error {row['quant_error']:.2e}")
    except Exception as error:  # noqa: BLE001
        row["quant_ok"] = False
        row["errors"].append("quant: " + short(error))
        if os.environ.get("ARCH_SWEEP_TRACEBACK"):
            traceback.print_exc()
    row["seconds"] = time.perf_counter() - start
    return row


def _frozen_summary(stats: dict) -> str:
    """The pass's own words for groups it left alone (frozen/refused), if its stats name any."""
    for key in ("frozen", "refused", "skipped"):
        if stats.get(key):
            value = stats[key]
            return "; ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return ""


def run_child(name: str, timeout: float, script: str = __file__, extra: tuple[str, ...] | list[str] = ()) -> dict:
    """Run ``script --one name [extra...]`` in a child process (a crash or hang is one row's error); its JSON
    row, or a row whose error says why there is none. Shared with the sibling sweeps."""
    command = [sys.executable, script, "--one", name, *extra]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "errors": [f"timed out after {timeout:.0f} s"]}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"name": name, "errors": [f"child exited {done.returncode}: {tail[:300]}"]}


def mark(value) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def table(rows: list[dict]) -> list[str]:
    from graphpress.testing.results import markdown_cell

    lines = ["| architecture | model class | trace ok | prune ratio | prune ok | ONNX parity (rel) | quant W8 ok "
             "(linears, rel err) | s | errors |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.3f}" if "ratio" in r else "-"
        parity = f"{r['parity']:.1e}" if "parity" in r else "-"
        quant = mark(r.get("quant_ok")) + (f" ({r['quant_layers']} linears, {r['quant_error']:.1e})"
                                            if "quant_error" in r else "")
        seconds = f"{r['seconds']:.0f}" if "seconds" in r else "-"
        errors = markdown_cell("; ".join(r["errors"])) or ""
        lines.append(f"| {r['name']} | {r.get('model', '-')} | {mark(r.get('trace'))} | {ratio} | "
                     f"{mark(r.get('prune_ok'))} | {parity} | {quant} | {seconds} | {errors} |")
    return lines


def recovered(rows: list[dict]) -> list[str]:
    """Notes on the architectures where prune-channels left groups unpruned because pruning them broke the
    model's own forward code (``recover=``, on by default): which groups, and how many trial runs it took."""
    notes = [f"- {r['name']} ({r.get('recover_trials', 0)} trial runs): {r['frozen']}" for r in rows if r.get("frozen")]
    repairs = [f"- {r['name']}: {'; '.join(r['size_repairs'])}" for r in rows if r.get("size_repairs")]
    ties = [f"- {r['name']}: {'; '.join(r['width_ties'])}" for r in rows if r.get("width_ties")]
    lines = []
    if notes:
        lines += ["", "Groups `prune-channels` froze (`recover=`, on by default) because pruning them broke the model's "
                  "own forward code; the other groups carry the ratio:", ""] + notes
    if repairs:
        lines += ["", "Size attributes `recover=` rewrote instead of freezing (the forward reshaped with a stored "
                  "number; each rule checked against the pruned graph's outputs):", ""] + repairs
    if ties:
        lines += ["", "Groups pruned by equal widths instead of freezing (the forward reads the residual width as the "
                  "heads' width: `recover=` ties them):", ""] + ties
    return lines


def sweep_rows(names: list[str], jobs: int, timeout: float, script: str = __file__) -> tuple[list[dict], int]:
    """Each name swept in a child process of ``script`` (``jobs`` at once), each row printed as it comes; the rows
    and how many passed both checks."""
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # the children do the work; threads only wait
        futures = [pool.submit(run_child, name, timeout, script) for name in names]
        rows = []
        for future in futures:
            rows.append(future.result())
            print(table(rows[-1:])[-1], file=sys.stderr, flush=True)
    return rows, sum(bool(r.get("prune_ok") and r.get("quant_ok")) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated architecture names (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per architecture")
    parser.add_argument("--jobs", type=int, default=2, help="architectures swept at once (one process each)")
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one architecture, a JSON line on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(sweep_one(args.one)))
        return
    from graphpress.testing.arch_zoo import arch_case_names
    from graphpress.testing.results import publish_lines

    names = args.only.split(",") if args.only else arch_case_names()
    rows, passed = sweep_rows(names, args.jobs, args.timeout)
    header = [
        "# Architecture sweep: prune-channels and W8 quantization on tiny Hugging Face models",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/arch_sweep.py{' --only ' + args.only if args.only else ''}` "
        f"(torch {__import__('torch').__version__}, transformers {__import__('transformers').__version__}, CPU).",
        "Each model: 2 layers, small widths, random weights (graphpress/testing/arch_zoo.py). " + checks_sentence(),
        "",
        f"{passed} of {len(rows)} architectures pass both checks.",
        "",
    ]
    publish_lines(args.output, header + table(rows) + recovered(rows))


if __name__ == "__main__":
    main()
