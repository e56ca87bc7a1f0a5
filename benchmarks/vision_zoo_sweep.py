"""Sweep graphpress over torchvision's and timm's model zoos (random weights, one small image each;
``graphpress.testing.vision_zoo``) with the checks of ``arch_sweep.py``:

1. ``prune-channels{ratio=0.3}``: the achieved ratio must be 0.27-0.33, the class and output shapes kept, the
   pruned model must run, and its ONNX export (graphpress.export_onnx, onnxruntime) must match it to 1e-4;
2. ``quantize{bits=8,group=0}`` (W8 weight-only RTN, per output channel): the model must run and its first
   output stay within 3% (relative max error) of the original's.

Groups ``prune-channels`` froze are listed with the reasons it gave. Needs torchvision and timm, which are not
graphpress dependencies and which CI does not install (nothing is downloaded: no pretrained weights):

    pip install torchvision timm
    PYTHONPATH=. python benchmarks/vision_zoo_sweep.py [--only tv_resnet18,timm_vit_tiny_patch16] [--timeout 300]

Each model runs in its own child process (``--one NAME``), one at a time by default (``--jobs``), so a crash or
a hang is one row's error, not the sweep's end. Writes benchmarks/results/vision_zoo_sweep.md (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from arch_sweep import (  # noqa: E402  (the shared sweep helpers)
    checks_sentence,
    recovered,
    sweep_built,
    sweep_rows,
    table,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results", "vision_zoo_sweep.md")


def sweep_one(name: str) -> dict:
    """Build one zoo model, trace, prune and quantize it; the row of the table."""
    from graphpress.testing.vision_zoo import vision_case

    return sweep_built(name, vision_case)


def main() -> None:
    from graphpress.testing.results import publish_lines, sweep_arguments

    parser = sweep_arguments(__doc__, RESULTS, "comma-separated model names (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per model")
    parser.add_argument("--jobs", type=int, default=1, help="models swept at once (one process each)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one model, a JSON line on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(sweep_one(args.one)))
        return
    from graphpress.testing.vision_zoo import vision_case_names

    names = args.only.split(",") if args.only else vision_case_names()
    rows, passed = sweep_rows(names, args.jobs, args.timeout, __file__)
    import timm
    import torch
    import torchvision

    header = [
        "# Vision zoo sweep: prune-channels and W8 quantization on torchvision and timm models",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/vision_zoo_sweep.py{' --only ' + args.only if args.only else ''}`"
        f" (torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, CPU, "
        f"{args.jobs} model at a time, {args.timeout:.0f} s per model).",
        "Each model: random weights (`weights=None` / `pretrained=False`, 10 classes), BatchNorm statistics "
        "randomized, batch 1, 64 px where the model accepts it (graphpress/testing/vision_zoo.py gives each "
        "model's size). " + checks_sentence() + " s = seconds for both, tracing included.",
        "",
        f"{passed} of {len(rows)} models pass both checks.",
        "",
    ]
    publish_lines(args.output, header + table(rows) + recovered(rows))


if __name__ == "__main__":
    main()
