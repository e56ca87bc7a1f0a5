"""Sweep graphpress's calibration-based methods over the tiny Hugging Face architectures of ``arch_sweep.py``.

The calibrated methods hook into a model's repeated blocks and replay them on captured inputs (attention
masks, position ids, rotary tables, ...), so they are the likeliest to break on an unfamiliar layout. For each
architecture (``graphpress.testing.arch_zoo``) and each method below, on the torch path with 3 random
calibration batches shaped like the example inputs (``random_calibration``):

* the pass runs and the model keeps its class and output shapes;
* its first output stays within the method's tolerance (relative max error against the original's);
* sparsify: every linear it pruned has exactly the ratio (``ratio=0.5``) or the N:M pattern (``2:4``);
  prune-channels: the achieved parameter ratio is within 0.27-0.33;
* coverage (the linears the method reached through the calibration walk, out of all of them) is reported,
  since a method that silently falls back to RTN/dense on most layers is not really exercised.

    PYTHONPATH=. python benchmarks/arch_calib_sweep.py [--only opt,bloom] [--methods gptq,wanda] [--jobs 1]

Each architecture runs in its own child process (``--one NAME``). Writes benchmarks/results/arch_calib_sweep.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(__file__))
from arch_sweep import mark, relative, run_child, short  # noqa: E402  (the shared sweep helpers)

RESULTS = os.path.join(os.path.dirname(__file__), "results", "arch_calib_sweep.md")
RATIO_RANGE = (0.27, 0.33)


@dataclass(frozen=True)
class Method:
    """One column of the sweep: a pipeline, the error its first output may show, and what else to check."""

    key: str
    pipeline: str
    tolerance: float
    check: str = ""  # "sparse" (exact ratio 0.5), "2:4", "prune" (parameter ratio) or "" (output only)


# Tolerances are relative max errors of the first output on random-weight models: W8 methods must be close;
# W4 and the pruning methods change random models a lot, so their bound only catches a broken model (NaN,
# a layer fed the wrong inputs blowing up), not quality.
METHODS = (
    Method("gptq", "quantize{bits=4,group=32,method=gptq}", 0.35),
    Method("awq", "quantize{bits=4,group=32,method=awq}", 0.35),
    Method("hqq", "quantize{bits=4,group=32,method=hqq}", 0.35),
    Method("smoothquant", "quantize{bits=8,group=0,method=smoothquant,act_bits=8}", 0.1),
    Method("wanda", "sparsify{ratio=0.5,method=wanda}", 1.5, "sparse"),
    Method("sparsegpt", "sparsify{ratio=0.5,method=sparsegpt}", 1.5, "sparse"),
    Method("wanda-2:4", "sparsify{pattern=2:4,method=wanda}", 1.5, "2:4"),
    Method("prune-wanda+reconstruct", "prune-channels{ratio=0.3,importance=wanda},reconstruct", 1.5, "prune"),
    Method("prune-flap+compensate", "prune-channels{ratio=0.3,importance=flap},compensate-bias", 1.5, "prune"),
    Method("prune-come", "prune-channels{ratio=0.3,importance=come}", 1.5, "prune"),
    Method("prune-depth", "prune-depth{layers=1,samples=3}", 3.0),
    Method("merge-layers", "merge-layers{layers=1,samples=3}", 3.0),
)


def _sparsity_problems(model, check: str) -> tuple[list[str], int, int]:
    """Problems with the zeros the pass left, and (pruned linears, all linears but the head)."""
    import torch

    problems, pruned, total = [], 0, 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.split(".")[-1] == "lm_head":
            continue
        total += 1
        weight = module.weight.detach()
        zeros = int((weight == 0).sum())
        if zeros == 0:
            continue  # left dense (outside the calibrated blocks); counted in the coverage
        pruned += 1
        if check == "sparse" and abs(zeros - weight.numel() / 2) > 1:
            problems.append(f"{name} sparsity {zeros / weight.numel():.3f}")
        if check == "2:4":
            if weight.shape[1] % 4:
                problems.append(f"{name} in_features {weight.shape[1]} not a multiple of 4 but pruned")
            elif int((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1).max()) > 2:
                problems.append(f"{name} breaks 2:4")
    return problems, pruned, total


def run_method(case, method: Method, calibration, reference) -> dict:
    """Run one method on one architecture; the cell of the table (ok, error, coverage, problems)."""
    import graphpress
    from graphpress.quantization import QuantizedLinear
    from graphpress.testing.zoo_checks import call_case, optimize_kwargs

    cell: dict = {"problems": []}
    model, report = graphpress.optimize(case.model, method.pipeline, calibration=calibration, return_report=True,
                                        **optimize_kwargs(case))
    problems = cell["problems"]
    if type(model) is not type(case.model):
        problems.append(f"class became {type(model).__name__}")
    outputs = call_case(model, case)
    if [tuple(o.shape) for o in outputs] != [tuple(o.shape) for o in reference]:
        problems.append("output shapes changed")
    cell["error"] = relative(outputs[0], reference[0])
    if not cell["error"] <= method.tolerance:  # NaN fails too
        problems.append(f"relative error {cell['error']:.2e} > {method.tolerance:g}")
    stats = report.records[0].stats
    if method.pipeline.startswith("quantize"):
        layers = sum(isinstance(m, QuantizedLinear) for m in model.modules())
        cell["coverage"] = f"{layers - int(stats.get('fallback_rtn', 0))}/{layers}"
    elif method.check in ("sparse", "2:4"):
        found, pruned, total = _sparsity_problems(model, method.check)
        problems += found
        cell["coverage"] = f"{pruned}/{total}"
    elif method.check == "prune":
        ratio = float(stats.get("achieved_ratio", 0.0))
        cell["coverage"] = f"ratio {ratio:.3f}"
        if not RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1]:
            problems.append(f"ratio {ratio:.3f} outside {RATIO_RANGE}")
    else:
        cell["coverage"] = f"{report.records[0].params_after / max(report.records[0].params_before, 1):.2f} params"
    cell["ok"] = not problems
    return cell


def sweep_one(name: str, methods: list[str]) -> dict:
    """Every selected method on one architecture; the row of the table."""
    import torch

    from graphpress.testing.arch_zoo import arch_case
    from graphpress.testing.zoo_checks import call_case, random_calibration

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))  # the pass manager deep-copies graphs
    torch.set_num_threads(1)
    row: dict = {"name": name, "cells": {}, "errors": []}
    start = time.perf_counter()
    try:
        case = arch_case(name)
        row["model"] = type(case.model).__name__
        calibration = random_calibration(case)
        reference = call_case(case.model, case)
    except Exception as error:  # noqa: BLE001 (a row's error, not the sweep's)
        row["errors"].append("build: " + short(error))
        return row
    for method in METHODS:
        if method.key not in methods:
            continue
        began = time.perf_counter()
        try:
            cell = run_method(case, method, calibration, reference)
        except Exception as error:  # noqa: BLE001
            cell = {"ok": False, "problems": [short(error)]}
            if os.environ.get("ARCH_SWEEP_TRACEBACK"):
                traceback.print_exc()
        cell["seconds"] = time.perf_counter() - began
        row["cells"][method.key] = cell
        row["errors"] += [f"{method.key}: {p}" for p in cell["problems"]]
    row["seconds"] = time.perf_counter() - start
    return row


def _cell_text(cell: dict | None) -> str:
    if cell is None:
        return "-"
    error = f" {cell['error']:.1e}" if "error" in cell else ""
    coverage = f" ({cell['coverage']})" if cell.get("coverage") else ""
    return mark(cell.get("ok")) + error + coverage


def table(rows: list[dict], methods: list[str]) -> list[str]:
    from graphpress.testing.results import markdown_cell

    lines = ["| architecture | model class | " + " | ".join(methods) + " | s | errors |",
             "|---|---|" + "---|" * len(methods) + "---|---|"]
    for r in rows:
        cells = " | ".join(_cell_text(r.get("cells", {}).get(m)) for m in methods)
        seconds = f"{r['seconds']:.0f}" if "seconds" in r else "-"
        errors = markdown_cell("; ".join(r["errors"])) or ""
        lines.append(f"| {r['name']} | {r.get('model', '-')} | {cells} | {seconds} | {errors} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated architecture names (default: all)")
    parser.add_argument("--methods", default=",".join(m.key for m in METHODS),
                        help="comma-separated method keys (default: all): " + ", ".join(m.key for m in METHODS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per architecture")
    parser.add_argument("--jobs", type=int, default=2, help="architectures swept at once (one process each)")
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one architecture, a JSON line on stdout
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - {m.key for m in METHODS}
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    if args.one:
        print(json.dumps(sweep_one(args.one, methods)))
        return
    from graphpress.testing.arch_zoo import arch_case_names
    from graphpress.testing.results import publish_lines

    names = args.only.split(",") if args.only else arch_case_names()
    script = os.path.abspath(__file__)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_child, name, args.timeout, script, ["--methods", ",".join(methods)])
                   for name in names]
        rows = []
        for future in futures:
            rows.append(future.result())
            print(table(rows[-1:], methods)[-1], file=sys.stderr, flush=True)
    passed = sum(c.get("ok", False) for r in rows for c in r.get("cells", {}).values())
    total = len(rows) * len(methods)
    described = "\n".join(f"- `{m.key}`: `{m.pipeline}`, tolerance {m.tolerance:g}" for m in METHODS
                          if m.key in methods)
    options = (" --only " + args.only if args.only else "") + \
        (" --methods " + args.methods if methods != [m.key for m in METHODS] else "")
    header = [
        "# Architecture sweep of the calibration-based methods on tiny Hugging Face models",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/arch_calib_sweep.py{options}` "
        f"(torch {__import__('torch').__version__}, transformers {__import__('transformers').__version__}, CPU).",
        "Each model: 2 layers, small widths, random weights (graphpress/testing/arch_zoo.py); calibration: 3 "
        "random batches shaped like the example inputs (masks kept). A cell: ok, relative max error of the "
        "first output, and coverage: quantize = linears calibrated / quantized (the rest fell back to RTN); "
        "sparsify = linears pruned / all but the head (every pruned one checked for exactly 50% or 2:4); "
        "prune-channels = achieved parameter ratio (0.27-0.33); depth passes = parameters kept. The error "
        "bounds of the lossy methods only catch broken models (random weights have no quality to keep).",
        "",
        described,
        "",
        f"{passed} of {total} (architecture, method) runs pass.",
        "",
    ]
    publish_lines(args.output, header + table(rows, methods))


if __name__ == "__main__":
    main()
