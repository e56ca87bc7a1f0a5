"""Depth compression quality on SmolLM2-135M (EVAL.md protocol): prune-depth, CoMe and LaCo merging, distill.

For each method and each budget (fraction of DECODER-LAYER parameters removed), the model is compressed,
its perplexity measured on the 16 evaluation windows, then each distillation pipeline given runs on a
copy of the compressed model and is measured too. The passes are applied directly to the Hugging Face
module (what ``graphpress.optimize`` does between tracing and handing the model back), so the wall times
are those of the methods themselves. Rows go to a Markdown table and a JSON file.

    python benchmarks/depth_quality.py --device cpu --out benchmarks/results/depth_quality.md
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from graphpress.eval import calibration_windows, evaluation_windows, perplexity
from graphpress.ir import Graph
from graphpress.models import load_smollm2
from graphpress.passes import PassContext, resolve_passes
from graphpress.passes.depth.budget import parameter_count
from graphpress.passes.depth.hf_layers import decoder_layers

METHOD_PIPELINES = {
    "prune-depth": "prune-depth{{ratio={ratio}}}",
    "come": "merge-layers{{ratio={ratio},method=come}}",
    "laco": "merge-layers{{ratio={ratio},method=laco}}",
}


def apply_pipeline(model: torch.nn.Module, pipeline: str, calibration: torch.Tensor,
                   teacher: torch.nn.Module) -> list[dict[str, Any]]:
    """Run the passes of ``pipeline`` on ``model`` in place; their statistics, one dict per pass."""
    graph = Graph("depth-benchmark")
    graph.module = model
    ctx = PassContext(calibration=calibration, check=False)
    ctx.extras["reference_module"] = teacher
    stats = []
    for compression_pass in resolve_passes(pipeline):
        compression_pass.requires(graph, ctx)
        stats.append(compression_pass.call(graph, ctx).stats)
    return stats


def optimize_on_cpu(model: torch.nn.Module, pipeline: str, calibration: torch.Tensor, tokenizer: Any,
                    device: str) -> tuple[torch.nn.Module, list[dict[str, Any]], float]:
    """Width pipelines (prune-channels, reconstruct, ...) need the traced graph: run them through
    ``graphpress.optimize`` on a CPU copy, then move the result to ``device`` for distillation."""
    import graphpress

    started = time.perf_counter()
    student, report = graphpress.optimize(copy.deepcopy(model).cpu(), pipeline, calibration=calibration,
                                          tokenizer=tokenizer, inplace=True, return_report=True)
    seconds = time.perf_counter() - started
    return student.to(device), [r.stats for r in report.records], seconds


def decoder_params(model: torch.nn.Module) -> int:
    return parameter_count(list(decoder_layers(model)[1]))


def timed(function, *args) -> tuple[Any, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    model, tokenizer = load_smollm2()
    model.to(args.device)
    evaluation = evaluation_windows(tokenizer)
    calibration = calibration_windows(tokenizer, args.calibration_windows)
    dense = perplexity(model, evaluation)
    dense_params = decoder_params(model)
    print(f"dense ppl {dense:.3f}, decoder params {dense_params:,}", flush=True)
    rows = []
    pipelines = args.pipelines or [METHOD_PIPELINES[m].format(ratio=r) for m in args.methods for r in args.ratios]
    for pipeline in pipelines:
        if args.traced:
            student, stats, seconds = optimize_on_cpu(model, pipeline, calibration, tokenizer, args.device)
        else:
            student = copy.deepcopy(model)
            stats, seconds = timed(apply_pipeline, student, pipeline, calibration, model)
        row = {"pipeline": pipeline, "seconds": round(seconds, 1),
               "layers": student.config.num_hidden_layers,
               "removed_fraction": round(1 - decoder_params(student) / dense_params, 4),
               "ppl": perplexity(student, evaluation), "stats": stats, "distilled": []}
        print(f"{pipeline}: ppl {row['ppl']:.3f} ({row['ppl'] / dense:.3f}x) in {seconds:.1f}s", flush=True)
        for distill_pipeline in args.distill:
            trained = copy.deepcopy(student)
            distill_stats, distill_seconds = timed(apply_pipeline, trained, distill_pipeline, calibration, model)
            entry = {"pipeline": distill_pipeline, "seconds": round(distill_seconds, 1),
                     "ppl": perplexity(trained, evaluation), "stats": distill_stats}
            row["distilled"].append(entry)
            print(f"  + {distill_pipeline}: ppl {entry['ppl']:.3f} ({entry['ppl'] / dense:.3f}x) "
                  f"in {distill_seconds:.1f}s", flush=True)
        rows.append(row)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    return {"dense_ppl": dense, "dense_decoder_params": dense_params, "device": device,
            "torch": torch.__version__, "calibration_windows": args.calibration_windows, "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    dense = results["dense_ppl"]
    lines = [f"Dense perplexity {dense:.3f}; decoder-layer parameters {results['dense_decoder_params']:,}; "
             f"device {results['device']}, torch {results['torch']}; "
             f"{results['calibration_windows']} calibration windows of 512 tokens.", "",
             "| pipeline | layers left | decoder params removed | ppl | x dense | compress s |",
             "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| `{row['pipeline']}` | {row['layers']} | {row['removed_fraction']:.1%} | "
                     f"{row['ppl']:.3f} | {row['ppl'] / dense:.3f} | {row['seconds']:.1f} |")
        for entry in row["distilled"]:
            lines.append(f"| `{row['pipeline']},{entry['pipeline']}` | {row['layers']} | "
                         f"{row['removed_fraction']:.1%} | {entry['ppl']:.3f} | {entry['ppl'] / dense:.3f} | "
                         f"{row['seconds'] + entry['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHOD_PIPELINES), choices=list(METHOD_PIPELINES))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--pipelines", nargs="*", default=None,
                        help="compression pipelines to run instead of every method at every ratio")
    parser.add_argument("--distill", nargs="*", default=["distill"], help="distillation pipelines to try")
    parser.add_argument("--calibration-windows", type=int, default=32)
    parser.add_argument("--traced", action="store_true",
                        help="run --pipelines through graphpress.optimize on the CPU (width pruning), then distill "
                             "and evaluate on --device")
    parser.add_argument("--out", type=Path, default=None, help="Markdown table to write")
    parser.add_argument("--json", type=Path, default=None, help="JSON of every row and pass statistic")
    args = parser.parse_args()
    results = run(args)
    table = markdown(results)
    print(table)
    if args.out:
        args.out.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
