"""OWL's two hyperparameters on SmolLM2-135M: does any (lambda, M) beat uniform sparsity at 60%?

OWL (Yin et al. 2024) shifts each block's sparsity by up to ``lambda`` according to its share of outlier
Wanda scores (scores above ``M`` times the block mean). The paper's LLaMA values (0.08, 5) lose to uniform
ratios on this model (``sparsity_quality_h100.md``); this sweep measures the grid the paper searched,
with the protocol of EVAL.md (16 evaluation and 16 calibration windows of 512 tokens).

    python benchmarks/owl_sweep.py --device cuda [--method wanda] [--ratio 0.6]
"""

from __future__ import annotations

import argparse
import copy
import itertools

import torch

from graphpress.eval import calibration_windows, evaluation_windows, perplexity
from graphpress.models import load_smollm2
from graphpress.sparsity import parse_pattern, sparsify_model

LAMBDAS = (0.02, 0.04, 0.08, 0.12, 0.2)
THRESHOLDS = (3.0, 5.0, 7.0, 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="wanda", choices=("wanda", "sparsegpt"))
    parser.add_argument("--ratio", type=float, default=0.6)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_smollm2()
    model.to(args.device)
    evaluation = evaluation_windows(tokenizer, n_windows=16)
    calibration = calibration_windows(tokenizer, n_windows=16)
    dense = perplexity(model, evaluation)
    pattern = parse_pattern(args.ratio, None)
    settings = [("uniform", None, None)] + [("owl", lam, m) for lam, m in itertools.product(LAMBDAS, THRESHOLDS)]
    rows = []
    for allocation, lam, threshold in settings:
        candidate = copy.deepcopy(model)
        extra = {} if lam is None else {"owl_lambda": lam, "owl_threshold": threshold}
        sparsify_model(candidate, pattern, method=args.method, allocation=allocation, calibration=calibration,
                       **extra)
        ppl = perplexity(candidate, evaluation)
        rows.append((allocation, lam, threshold, ppl))
        print(f"| {allocation} | {lam if lam is not None else '-'} | {threshold if threshold is not None else '-'} "
              f"| {ppl:.3f} | {ppl / dense:.3f} |", flush=True)
        del candidate
    uniform = rows[0][3]
    best = min(rows[1:], key=lambda row: row[3])
    print(f"\ndense {dense:.3f}; {args.method} at {args.ratio:.0%}: uniform {uniform:.3f}, best OWL "
          f"(lambda {best[1]}, M {best[2]}) {best[3]:.3f} ({best[3] / uniform - 1:+.1%} vs uniform)")


if __name__ == "__main__":
    main()
