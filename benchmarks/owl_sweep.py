"""Layer-adaptive allocations on SmolLM2-135M: does OWL (at any lambda, M) or LAMP beat uniform sparsity?

OWL (Yin et al. 2024) shifts each decoder block's sparsity by up to ``lambda`` according to its share of
outlier Wanda scores (scores above ``M`` times the block mean); LAMP (Lee et al. 2021) takes per-layer ratios
from a global threshold on magnitude scores. Each setting is pruned with the chosen method and compared with
uniform ratios on the same evaluation windows, *paired per window*: for every window the difference of mean
next-token loss against uniform, whose mean gives the perplexity ratio and whose spread over windows gives a
standard error (``+-2 SE`` is printed, so a difference inside it is not consistent across the text).

Settings (``--settings``, comma separated): ``uniform``, ``lamp``, ``owl:LAMBDA:M`` (a negative ``LAMBDA``
reverses OWL's sign: more outliers, *higher* sparsity; a diagnostic, not a method), ``depth:D`` (not an
allocation of graphpress: block ``i`` of ``L`` at ``ratio + D * (2 i / (L - 1) - 1)``, a linear ramp in depth,
to test whether this model prefers deep or shallow blocks pruned harder). Default: uniform, LAMP and the OWL
grid the paper searched (lambda 0.02..0.2 x M 3..10).

    python benchmarks/owl_sweep.py [--method wanda] [--ratio 0.6] [--threads 1] [--eval-windows 16]
        [--eval-skip 0] [--settings uniform,owl:0.08:5,lamp] [--output results.md] [--json losses.json]

``--eval-skip K`` evaluates on windows ``K .. K + eval-windows - 1`` of the evaluation half (EVAL.md uses the
first 16): a held-out check of a setting chosen on the first 16. ``--calib-skip K`` calibrates on windows
``K ..`` instead of ``0 ..``: with ``--settings uniform`` it shows how far another calibration set alone moves
the result. The dense model's input norms, which OWL reads,
are computed once and reused by every OWL setting (they depend only on the dense model and calibration).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import time
from pathlib import Path

import torch

from graphpress.eval import calibration_windows, evaluation_windows, window_losses
from graphpress.models import load_smollm2
from graphpress.sparsity import api, parse_pattern, sparsify_model

LAMBDAS = (0.02, 0.04, 0.08, 0.12, 0.2)
THRESHOLDS = (3.0, 5.0, 7.0, 10.0)
DEFAULT = ["uniform", "lamp"] + [f"owl:{lam}:{m:g}" for lam, m in itertools.product(LAMBDAS, THRESHOLDS)]


def _cache_dense_norms() -> None:
    """Reuse the first computation of the dense input norms (every candidate is a copy of one dense model)."""
    compute, cache = api._input_norms, {}

    def cached(model, calibration, tokenizer):
        if "norms" not in cache:
            cache["norms"] = compute(model, calibration, tokenizer)
        return cache["norms"]

    api._input_norms = cached


def _depth_ramp(spread: float):
    """An ``_allocate`` replacement: ratio + spread * (2 i / (L - 1) - 1) for block i of L (diagnostic only)."""
    def allocate(model, linears, pattern, method, allocation, calibration, tokenizer, owl=None):
        members = api._block_members(model, linears)
        last = max(len(members) - 1, 1)
        ratios = {name: pattern.ratio for name in linears}
        for index, names in enumerate(members.values()):
            for name in names:
                ratios[name] = pattern.ratio + spread * (2 * index / last - 1)
        return ratios
    return allocate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="wanda", choices=("wanda", "sparsegpt", "magnitude"))
    parser.add_argument("--ratio", type=float, default=0.6)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--eval-windows", type=int, default=16)
    parser.add_argument("--eval-skip", type=int, default=0, help="skip this many evaluation windows first")
    parser.add_argument("--calib-windows", type=int, default=16)
    parser.add_argument("--calib-skip", type=int, default=0,
                        help="skip this many calibration windows (another calibration set: a noise floor)")
    parser.add_argument("--settings", default=",".join(DEFAULT))
    parser.add_argument("--output", type=Path, help="append the markdown rows to this file")
    parser.add_argument("--json", type=Path, help="per-window losses of every setting (resumable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    _cache_dense_norms()
    model, tokenizer = load_smollm2()
    model.to(args.device)
    windows = evaluation_windows(tokenizer, n_windows=args.eval_skip + args.eval_windows)[args.eval_skip:]
    calibration = calibration_windows(tokenizer, n_windows=args.calib_skip + args.calib_windows)[args.calib_skip:]
    pattern = parse_pattern(args.ratio, None)
    positions = windows.shape[1] - 1
    saved = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    settings = args.settings.split(",")
    if "uniform" not in settings:
        settings.insert(0, "uniform")
    header = (f"\n{args.method} at {args.ratio:.0%}, SmolLM2-135M, {args.device}, {args.threads} thread(s), "
              f"eval windows {args.eval_skip}..{args.eval_skip + args.eval_windows - 1} of 512 tokens, "
              f"calibration windows {args.calib_skip}..{args.calib_skip + args.calib_windows - 1}\n\n"
              "| method | setting | ppl | vs uniform | +-2 SE (paired over windows) | windows better | prune s |\n"
              "|---|---|---|---|---|---|---|")
    print(header, flush=True)
    lines = [header]
    losses: dict[str, torch.Tensor] = {}
    for setting in settings:
        key = (f"{args.method}|{args.ratio}|{args.eval_skip}+{args.eval_windows}|"
               f"{args.calib_skip}+{args.calib_windows}|{setting}")
        if key in saved:
            losses[setting], seconds = torch.tensor(saved[key]["losses"], dtype=torch.float64), saved[key]["s"]
        else:
            kind, *values = setting.split(":")
            options: dict = {}
            allocate = api._allocate
            if kind == "owl":
                options = {"allocation": "owl", "owl_lambda": float(values[0]), "owl_threshold": float(values[1])}
            elif kind == "lamp":
                options = {"allocation": "lamp"}
            elif kind == "depth":
                api._allocate = _depth_ramp(float(values[0]))
                options = {"allocation": "lamp"}  # any adaptive allocation: routes through _allocate
            candidate = copy.deepcopy(model)
            started = time.perf_counter()
            try:
                sparsify_model(candidate, pattern, method=args.method, calibration=calibration, **options)
            finally:
                api._allocate = allocate
            seconds = time.perf_counter() - started
            losses[setting] = window_losses(candidate, windows)
            del candidate
            if args.json:
                saved[key] = {"losses": losses[setting].tolist(), "s": seconds}
                args.json.write_text(json.dumps(saved))
        mean_loss = losses[setting] / positions
        ppl = math.exp(float(mean_loss.mean()))
        if setting == "uniform":
            row = f"| {args.method} | uniform | {ppl:.3f} | - | - | - | {seconds:.0f} |"
        else:
            diff = mean_loss - losses["uniform"] / positions
            se = float(diff.std()) / math.sqrt(diff.numel()) if diff.numel() > 1 else float("nan")
            change = math.exp(float(diff.mean())) - 1
            band = (math.exp(float(diff.mean()) - 2 * se) - 1, math.exp(float(diff.mean()) + 2 * se) - 1)
            row = (f"| {args.method} | {setting} | {ppl:.3f} | {change:+.1%} | {band[0]:+.1%} .. {band[1]:+.1%} | "
                   f"{int((diff < 0).sum())}/{diff.numel()} | {seconds:.0f} |")
        print(row, flush=True)
        lines.append(row)
    if args.output:
        with args.output.open("a") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
