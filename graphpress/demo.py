"""``make demo``: compress the embedded SmolLM2-135M with a graphpress pipeline and print before/after.

Measures, on this machine and per EVAL.md: parameters, serialized size, perplexity on the pydoc-topics
evaluation windows, and the latency of one 512-token forward pass (both models timed side by side,
interleaved, median of several runs).

    python -m graphpress.demo [--pipeline "..."] [--windows 16]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch

__all__ = ["DEFAULT_PIPELINE", "main"]

DEFAULT_PIPELINE = "dce,quantize{bits=8,group=0}"


def _serialized_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def _latency_ratio(original: torch.nn.Module, compressed: torch.nn.Module, ids: torch.Tensor, runs: int = 5):
    times: dict[str, list[float]] = {"original": [], "compressed": []}
    with torch.no_grad():
        for model in (original, compressed):
            model(ids)  # warm-up
        for _ in range(runs):
            for key, model in (("original", original), ("compressed", compressed)):
                start = time.perf_counter()
                model(ids)
                times[key].append(time.perf_counter() - start)
    original_s, compressed_s = statistics.median(times["original"]), statistics.median(times["compressed"])
    return original_s, compressed_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default=DEFAULT_PIPELINE)
    parser.add_argument("--windows", type=int, default=16, help="evaluation windows (EVAL.md: 16)")
    parser.add_argument("--calibration-windows", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    import graphpress
    from graphpress.eval import calibration_windows, evaluation_windows, perplexity
    from graphpress.models import load_smollm2

    print(f"graphpress {graphpress.__version__} demo: SmolLM2-135M, pipeline {args.pipeline!r}")
    start = time.perf_counter()
    model, tokenizer = load_smollm2()
    print(f"loaded SmolLM2-135M in {time.perf_counter() - start:.1f}s")
    windows = evaluation_windows(tokenizer, n_windows=args.windows)
    calibration = calibration_windows(tokenizer, n_windows=args.calibration_windows)

    start = time.perf_counter()
    compressed, report = graphpress.optimize(
        model, args.pipeline, example_inputs=(windows[:1, :64],), calibration=calibration, tokenizer=tokenizer,
        return_report=True,
    )
    seconds = time.perf_counter() - start
    print(report.table())
    print(f"pipeline wall time: {seconds:.1f}s")

    rows = []
    params = [sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers())
              for m in (model, compressed)]
    sizes = [_serialized_bytes(m) / 2**20 for m in (model, compressed)]
    ppl = [perplexity(m, windows) for m in (model, compressed)]
    t_orig, t_comp = _latency_ratio(model, compressed, windows[:1])
    rows.append(("parameters + buffers (all)", f"{params[0]:,}", f"{params[1]:,}", f"{params[1] / params[0]:.3f}x"))
    rows.append(("serialized size (MiB)", f"{sizes[0]:.1f}", f"{sizes[1]:.1f}", f"{sizes[1] / sizes[0]:.3f}x"))
    rows.append((f"perplexity ({args.windows}x512 eval windows)", f"{ppl[0]:.3f}", f"{ppl[1]:.3f}",
                 f"{ppl[1] / ppl[0]:.3f}x"))
    rows.append(("latency, 1x512 forward, CPU (ms)", f"{t_orig * 1e3:.0f}", f"{t_comp * 1e3:.0f}",
                 f"speed-up {t_orig / t_comp:.2f}x"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':{width}}  {'original':>14}  {'compressed':>14}  {'ratio':>14}")
    for name, a, b, ratio in rows:
        print(f"{name:{width}}  {a:>14}  {b:>14}  {ratio:>14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
