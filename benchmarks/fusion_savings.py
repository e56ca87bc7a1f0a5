"""What the exact graph merges save in onnxruntime: nodes, parameters and CPU latency, before vs after.

* A ResNet-18-shaped CNN (BasicBlocks with BatchNorm, written out here: torchvision is not installed) with a
  per-channel scale/shift module after the stem, random weights and BatchNorm statistics, 112x112 images
  at batch 1 and 8, through ``fold-bn,fold-affine,fold-constants,dce``.
* A tiny Llama (2 decoder layers, hidden 256, GQA 8/4 heads, SwiGLU 688, 64 tokens) through
  ``fuse-qkv,fuse-gate-up``.

Both models are exported with ``graphpress.export_onnx`` and optimized from the ONNX file, as a user of
the CLI would. Latency: CPU execution provider, 1 intra-op thread, warm-up runs, then the median of
``--runs`` runs with the two models interleaved (before, after, before, ...) so both see the same load.

    PYTHONPATH=. python benchmarks/fusion_savings.py [--runs 30] [--out benchmarks/results/fusion_savings.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import graphpress
from graphpress.testing import randomize_batchnorm

RESULTS = os.path.join(os.path.dirname(__file__), "results", "fusion_savings.md")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class ChannelAffine(nn.Module):
    """A per-channel scale and shift (input normalization / LayerScale-like), folded by fold-affine."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("scale", torch.rand(channels, 1, 1) + 0.5)
        self.register_buffer("shift", torch.randn(channels, 1, 1) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64))
        self.stem_affine = ChannelAffine(64)
        self.pool = nn.MaxPool2d(3, 2, 1)
        widths, blocks, cin = (64, 128, 256, 512), [], 64
        for i, w in enumerate(widths):
            blocks += [BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.stem_affine(self.stem(x))))
        return self.fc(self.blocks(x).mean((2, 3)))


def _cnn() -> ResNet18:
    torch.manual_seed(0)
    return randomize_batchnorm(ResNet18().eval())


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


def _round_trip(path: str) -> onnx.ModelProto:
    """The file read into graphpress IR and written back with no pass: the baseline, so that the import's
    own normalization (constant subgraphs folded, attention written one way) is not counted as a saving."""
    from graphpress.backends.onnx import to_onnx

    return to_onnx(graphpress.load_onnx(path))


def _params(model: onnx.ModelProto) -> int:
    """Elements of floating-point initializers (weights; shape and split-size constants not counted)."""
    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in floating)


def _session(model: onnx.ModelProto, optimize: bool) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _time_side_by_side(before: onnx.ModelProto, after: onnx.ModelProto, feed: np.ndarray,
                       runs: int, warmup: int, optimize: bool) -> tuple[float, float, float]:
    """Median ms of each (interleaved runs) and the max relative difference of their outputs."""
    sessions = [_session(before, optimize), _session(after, optimize)]
    feeds = [{s.get_inputs()[0].name: feed} for s in sessions]
    outs = [s.run(None, f)[0] for s, f in zip(sessions, feeds)]
    err = float(np.abs(outs[0] - outs[1]).max() / np.abs(outs[0]).max())
    for _ in range(warmup):
        for s, f in zip(sessions, feeds):
            s.run(None, f)
    times: list[list[float]] = [[], []]
    for _ in range(runs):
        for i, (s, f) in enumerate(zip(sessions, feeds)):
            start = time.perf_counter()
            s.run(None, f)
            times[i].append((time.perf_counter() - start) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1]), err


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, default=112, help="CNN image side")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cnn = _cnn()
        cnn_pipeline = "fold-bn,fold-affine,fold-constants,dce"
        for batch in (1, 8):  # exported shapes are static: one file per batch size
            example = torch.randn(batch, 3, args.size, args.size)
            path = graphpress.export_onnx(cnn, os.path.join(tmp, f"resnet18_b{batch}.onnx"), example_inputs=(example,))
            before = _round_trip(path)
            after, report = graphpress.optimize(path, cnn_pipeline, example_inputs=(example,), return_report=True)
            print(f"cnn batch {batch}: {[r.stats for r in report.records]}", file=sys.stderr)
            for optimize in (True, False):
                t0, t1, err = _time_side_by_side(before, after, example.numpy(), args.runs, args.warmup, optimize)
                rows.append((f"ResNet-18-shaped CNN, {args.size}x{args.size}, batch {batch}", cnn_pipeline,
                             optimize, before, after, t0, t1, err))

        llama = _llama()
        ids = torch.randint(0, 512, (1, 64), generator=torch.Generator().manual_seed(1))
        path = graphpress.export_onnx(llama, os.path.join(tmp, "llama.onnx"), example_inputs={"input_ids": ids},
                                      example_kwargs={"use_cache": False})
        llama_pipeline = "fuse-qkv,fuse-gate-up"
        before = _round_trip(path)
        after, report = graphpress.optimize(path, llama_pipeline, example_inputs=(ids,), return_report=True)
        print(f"llama: {[r.stats for r in report.records]}", file=sys.stderr)
        for optimize in (True, False):
            t0, t1, err = _time_side_by_side(before, after, ids.numpy(), args.runs, args.warmup, optimize)
            rows.append(("tiny Llama (2 layers, hidden 256, GQA 8/4, 64 tokens), batch 1", llama_pipeline,
                         optimize, before, after, t0, t1, err))

    lines = [
        "# Exact graph merges: what they save in onnxruntime (CPU)",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/fusion_savings.py --runs {args.runs} --size {args.size}`; "
        f"CPU: {_cpu_name()} (a machine shared with other jobs: latencies are noisy, the two models of a row "
        f"were timed interleaved in one run so they saw the same load). onnxruntime {ort.__version__}, CPU "
        f"execution provider, 1 intra-op thread, {args.warmup} warm-up runs, median of {args.runs} runs. "
        "Random weights; both models exported with `graphpress.export_onnx`, then optimized from the ONNX file. "
        "Baseline (\"before\") = the exported file read into graphpress and written back with no pass, so the "
        "import's own normalization is not counted. \"ORT graph opt.\" = onnxruntime's default graph "
        "optimizations (which fuse Conv+BatchNorm/Mul/Add themselves) or all of them disabled (what a runtime "
        "without such fusions sees). Max relative output difference after vs before in the last column.",
        "",
        "| model | pipeline | nodes before -> after | params before -> after | ORT graph opt. | ms before | ms after | speed-up | max rel. diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, pipeline, optimize, before, after, t0, t1, err in rows:
        lines.append(f"| {name} | `{pipeline}` | {len(before.graph.node)} -> {len(after.graph.node)} | "
                     f"{_params(before):,} -> {_params(after):,} | {'default' if optimize else 'off'} | {t0:.2f} | {t1:.2f} | {t0 / t1:.2f}x | {err:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
