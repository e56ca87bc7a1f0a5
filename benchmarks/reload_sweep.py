"""Pruned Hugging Face models saved and loaded back: ``save_pretrained`` then ``graphpress.load_pruned``.

For each architecture of ``graphpress.testing.arch_zoo`` (tiny, random weights) and each pruning scope
(``local``: every group loses about the same fraction; ``global``: widths differ per layer), the model is
pruned with ``prune-channels{ratio=0.3,scope=...}``, saved with its own ``save_pretrained``, loaded with
``graphpress.load_pruned`` into a fresh process-local model of the same class, and both are run on the
architecture's example inputs: ok = outputs equal to 1e-4 (relative max error).

    PYTHONPATH=. python benchmarks/reload_sweep.py [--only gpt_neox,gemma2]

Writes benchmarks/results/reload_sweep.md (``--output`` to write elsewhere).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULTS = os.path.join(os.path.dirname(__file__), "results", "reload_sweep.md")
TOLERANCE = 1e-4


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


def main() -> None:
    from graphpress.testing.arch_zoo import arch_case_names
    from graphpress.testing.results import publish_lines, sweep_arguments

    args = sweep_arguments(__doc__, RESULTS, "comma-separated architecture names (default: all)").parse_args()
    warnings.filterwarnings("ignore")
    started = time.time()
    rows, passed = [], 0
    for name in args.only.split(",") if args.only else arch_case_names():
        cells = []
        for scope in ("local", "global"):
            try:
                error = reload_error(name, scope)
                ok = error <= TOLERANCE
                cells.append(f"{'ok' if ok else 'MISMATCH'} ({error:.1e})")
            except Exception as exc:  # noqa: BLE001 - a row's failure, named in its cell
                ok = False
                text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
                cells.append(f"FAIL: {type(exc).__name__}: {text}".replace("|", "/"))
            passed += ok
        rows.append(f"| {name} | {cells[0]} | {cells[1]} |")
        print(rows[-1], file=sys.stderr, flush=True)
    import torch
    import transformers

    publish_lines(args.output, [
        "# Pruned models saved and loaded back (`save_pretrained` + `graphpress.load_pruned`)",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/reload_sweep.py` ({time.time() - started:.0f} s; torch "
        f"{torch.__version__}, transformers {transformers.__version__}, CPU). Each architecture of "
        "graphpress/testing/arch_zoo.py pruned with `prune-channels{ratio=0.3,scope=S}`, saved, loaded with "
        f"`graphpress.load_pruned`, both run on the example inputs: ok = outputs within {TOLERANCE:g} (relative "
        "max error), the figure in brackets.",
        "",
        f"**{passed} of {2 * len(rows)} pass.**",
        "",
        "| architecture | scope=local | scope=global |",
        "|---|---|---|",
        *rows,
    ])


if __name__ == "__main__":
    main()
