"""What channel pruning buys: ResNet-50 (torchvision's architecture, written out here since torchvision is
not installed) pruned to about half its FLOPs, timed against the unpruned model in onnxruntime on the CPU
(2 threads, batch 1, 224x224), side by side in one run: alternating blocks of ``--block`` runs per model
(medians), each session alone on the CPU while it is timed.

    PYTHONPATH=. python benchmarks/prune_resnet50_speed.py [--runs 30] [--options cost=latency]

The pass is asked for half the FLOPs directly (``flops=0.5``); ``--ratio`` asks for a parameter ratio
instead. Prints the load average and a table row for benchmarks/results/prune_resnet50_speed.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import onnx
import onnxruntime as ort
import torch
from torch import nn

import graphpress
from graphpress.backends.onnx.side_by_side import median_ms_in_blocks


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride sits on the 3x3 conv)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    sys.setrecursionlimit(100000)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--block", type=int, default=5, help="timed runs of one model before switching to the other")
    parser.add_argument("--ratio", type=float, default=None, help="parameter ratio (default: flops=0.5)")
    parser.add_argument("--round-to", type=int, default=0, help="kept channel multiple (default: the pass's own)")
    parser.add_argument("--options", default="", help="more prune-channels options, e.g. scope=local")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = ResNet50().eval()
    x = torch.randn(1, 3, 224, 224)
    target = f"ratio={args.ratio}" if args.ratio else "flops=0.5"
    options = target + (f",round_to={args.round_to}" if args.round_to else "") + \
        (f",{args.options}" if args.options else "")
    start = time.perf_counter()
    pruned, report = graphpress.optimize(model, f"prune-channels{{{options}}}", example_inputs=(x,),
                                         return_report=True, check=False)
    record = report.records[-1]
    round_to = record.stats["round_to"]
    flops = record.flops_after / record.flops_before
    params = record.params_after / record.params_before
    print(f"{options}: FLOPs x{flops:.3f}, params x{params:.3f}, {time.perf_counter() - start:.1f}s", flush=True)
    with torch.no_grad():
        shape = tuple(pruned(x).shape)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        dense_path, pruned_path = os.path.join(folder, "dense.onnx"), os.path.join(folder, "pruned.onnx")
        graphpress.export_onnx(model, dense_path, (x,))
        graphpress.export_onnx(pruned, pruned_path, (x,))
        onnx.checker.check_model(pruned_path)
        sessions = {"dense": _session(dense_path), "pruned": _session(pruned_path)}
        feed = {sessions["dense"].get_inputs()[0].name: x.numpy()}
        # Alternating blocks, never run-by-run: see graphpress.backends.onnx.side_by_side.
        calls = {name: (lambda s=session: s.run(None, feed)) for name, session in sessions.items()}
        medians = median_ms_in_blocks(calls, args.runs, args.block)
    dense_ms, pruned_ms = medians["dense"], medians["pruned"]
    command = "PYTHONPATH=. python benchmarks/prune_resnet50_speed.py --runs " + str(args.runs) + \
        (f" --block {args.block}" if args.block != 5 else "") + \
        (f" --ratio {args.ratio}" if args.ratio else "") + (f" --round-to {args.round_to}" if args.round_to else "") + \
        (f" --options {args.options}" if args.options else "")
    print(f"load average at the start: {load:.2f}; pruned output shape {shape}")
    print(f"| `{command}` | `prune-channels{{{options}}}` (round_to={round_to}) | {flops:.2f}x | {params:.2f}x | "
          f"{load:.1f} | {dense_ms:.1f} | {pruned_ms:.1f} | **{dense_ms / pruned_ms:.2f}x** |")


if __name__ == "__main__":
    main()
