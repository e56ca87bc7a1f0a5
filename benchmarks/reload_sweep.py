"""Pruned Hugging Face models saved and loaded back: ``save_pretrained`` then ``graphpress.load_pruned``.

For each architecture of ``graphpress.testing.arch_zoo`` (tiny, random weights) and each pruning scope
(``local``: every group loses about the same fraction; ``global``: widths differ per layer), the model is
pruned with ``prune-channels{ratio=0.3,scope=...}``, saved with its own ``save_pretrained``, loaded with
``graphpress.load_pruned`` into a fresh process-local model of the same class, and both are run on the
architecture's example inputs: ok = outputs equal to 1e-4 (relative max error).

Each architecture runs in a child process (``--timeout`` seconds, ``--jobs`` at once): a crash or a hang is
that row's error, not the sweep's end.

    PYTHONPATH=. python benchmarks/reload_sweep.py [--only gpt_neox,gemma2] [--jobs 2] [--timeout 600]

Writes benchmarks/results/reload_sweep.md (``--output`` to write elsewhere).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from arch_sweep import run_child  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results", "reload_sweep.md")
TOLERANCE = 1e-4
SCOPES = ("local", "global")


def reload_error(name: str, scope: str) -> float:
    """Relative max difference between a pruned model and its saved-and-loaded copy."""
    import graphpress
    from graphpress.testing.arch_zoo import arch_case
    from graphpress.testing.zoo_checks import call_case, optimize_kwargs

    case = arch_case(name)
    pruned = graphpress.optimize(case.model, f"prune-channels{{ratio=0.3,scope={scope}}}", **optimize_kwargs(case))
    want = call_case(pruned, case)
    with tempfile.TemporaryDirectory() as folder:
        pruned.save_pretrained(folder)
        got = call_case(graphpress.load_pruned(folder, model_class=type(pruned)), case)
    return max(float((a.float() - b.float()).abs().max() / b.float().abs().max()) for a, b in zip(got, want))


def scope_cell(name: str, scope: str) -> tuple[bool, str]:
    """(passed, table cell) for one architecture and scope; an exception is the cell's text."""
    try:
        error = reload_error(name, scope)
    except Exception as exc:  # noqa: BLE001 - a row's failure, named in its cell
        if os.environ.get("RELOAD_SWEEP_TRACEBACK"):
            traceback.print_exc()
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        return False, f"FAIL: {type(exc).__name__}: {text}".replace("|", "/")
    ok = error <= TOLERANCE
    return ok, f"{'ok' if ok else 'MISMATCH'} ({error:.1e})"


def sweep_one(name: str) -> dict:
    """Child mode: both scopes of one architecture, as the JSON row :func:`arch_sweep.run_child` reads."""
    warnings.filterwarnings("ignore")
    row: dict = {"name": name, "passed": 0, "cells": []}
    for scope in SCOPES:
        ok, cell = scope_cell(name, scope)
        row["passed"] += ok
        row["cells"].append(cell)
    return row


def table_row(row: dict) -> str:
    """The markdown row of a child's result (a child that died or hung: its error in every cell)."""
    cells = row.get("cells") or ["FAIL: " + "; ".join(row.get("errors", ["no result"])).replace("|", "/")] * 2
    return f"| {row['name']} | {cells[0]} | {cells[1]} |"


def main() -> None:
    from graphpress.testing.results import publish_lines, sweep_arguments

    parser = sweep_arguments(__doc__, RESULTS, "comma-separated architecture names (default: all)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per architecture (both scopes)")
    parser.add_argument("--jobs", type=int, default=1, help="architectures swept at once (one process each)")
    parser.add_argument("--one", help="child mode: one architecture, a JSON line on stdout")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(sweep_one(args.one)))
        return
    from graphpress.testing.arch_zoo import arch_case_names

    started = time.time()
    names = args.only.split(",") if args.only else arch_case_names()
    rows, passed = [], 0
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:  # the children do the work; threads only wait
        for row in pool.map(lambda name: run_child(name, args.timeout, __file__), names):
            passed += row.get("passed", 0)
            rows.append(table_row(row))
            print(rows[-1], file=sys.stderr, flush=True)
    import torch
    import transformers

    only = f" --only {args.only}" if args.only else ""
    publish_lines(args.output, [
        "# Pruned models saved and loaded back (`save_pretrained` + `graphpress.load_pruned`)",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/reload_sweep.py{only}` ({time.time() - started:.0f} s; torch "
        f"{torch.__version__}, transformers {transformers.__version__}, CPU). Each architecture of "
        "graphpress/testing/arch_zoo.py pruned with `prune-channels{ratio=0.3,scope=S}`, saved, loaded with "
        f"`graphpress.load_pruned`, both run on the example inputs: ok = outputs within {TOLERANCE:g} (relative "
        "max error), the figure in brackets.",
        "",
        f"**{passed} of {len(SCOPES) * len(rows)} pass.**",
        "",
        "| architecture | scope=local | scope=global |",
        "|---|---|---|",
        *rows,
    ])


if __name__ == "__main__":
    main()
