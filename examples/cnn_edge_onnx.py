"""Prepare a CNN for an edge runtime: fold BatchNorm, prune channels to half the FLOPs' worth, 8-bit
quantize its Linear classifier, and write ONNX.

    python examples/cnn_edge_onnx.py -o cnn.onnx

graphpress's `quantize` pass covers Linear layers (MatMulNBits / QDQ in ONNX); convolutions stay float here.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import torch

import graphpress
from graphpress.backends.onnx import run_onnxruntime
from graphpress.testing.zoo import tiny_case

PIPELINE = "fold-bn,prune-channels{ratio=0.3},quantize{bits=8,group=0}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--tiny", action="store_true", help="accepted for symmetry; the CNN is small anyway")
    args = parser.parse_args(argv)

    case = tiny_case("resnet")
    small, report = graphpress.optimize(case.model, PIPELINE, example_inputs=case.inputs, return_report=True)
    print(report.table())
    graphpress.export_onnx(small, args.output, example_inputs=case.inputs)
    with torch.no_grad():
        expected = small(*case.inputs).numpy()
    actual = run_onnxruntime(onnx.load(args.output), list(case.inputs))[0]
    error = float(np.abs(actual - expected).max() / np.abs(expected).max())
    print(f"onnxruntime vs torch: {error:.2e}; wrote {args.output}")
    return 0 if error <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
