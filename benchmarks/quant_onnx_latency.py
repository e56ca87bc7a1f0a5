"""Quantized SmolLM2 in onnxruntime: does the exported file match the graphpress torch model, and is it faster?

Three files from one model, timed side by side in one run on the CPU execution provider:
  fp32         graphpress.export_onnx of the float model
  W4 g64       quantize{bits=4,group=64} (RTN: the method changes the codes, not the kernels), exported with
               com.microsoft::MatMulNBits
  W8A8         quantize{bits=8,group=0,method=smoothquant} exported as QDQ (dynamic per-token activations)
For each: file size, the max relative error of onnxruntime's logits against the graphpress torch model the
file came from (max|ort - torch| / max|torch|), and the median latency of a forward over ``--tokens`` tokens
(batch 1; 1 token is a decode-sized call, 128 a prefill) against the fp32 file, the files taking turns.
The W4 file is also written with ``int8_compute=True`` (MatMulNBits accuracy_level 4: onnxruntime quantizes
the activations to int8 per block; faster, no longer bit-faithful to the float-activation torch model).

    PYTHONPATH=. python benchmarks/quant_onnx_latency.py [--tokens 1 128] [--runs 20] [--threads 2]

Writes benchmarks/results/quant_onnx_latency.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import graphpress
from graphpress.backends.onnx.side_by_side import median_ms_in_blocks
from graphpress.eval import calibration_windows
from graphpress.models import load_smollm2

RESULTS = Path(__file__).parent / "results" / "quant_onnx_latency.md"
VARIANTS = {
    "fp32": None,
    "W4 g64 (MatMulNBits)": "quantize{bits=4,group=64}",
    "W8A8 SmoothQuant (QDQ)": "quantize{bits=8,group=0,method=smoothquant}",
}


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _feeds(session: ort.InferenceSession, ids: torch.Tensor) -> dict:
    names = [i.name for i in session.get_inputs()]
    return {names[0]: ids.numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 128], help="sequence lengths to time")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_smollm2()
    calibration = calibration_windows(tokenizer, n_windows=16)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        models = {}
        for name, pipeline in VARIANTS.items():
            models[name] = model if pipeline is None else graphpress.optimize(model, pipeline, calibration=calibration,
                                                                             tokenizer=tokenizer)
        for tokens in args.tokens:
            ids = torch.randint(0, model.config.vocab_size, (1, tokens))
            sessions, facts = {}, {}
            for name, candidate in models.items():
                for int8 in ((False, True) if name.startswith("W4") else (False,)):
                    label = name + (", int8 compute" if int8 else "")
                    path = os.path.join(folder, f"{len(sessions)}_{tokens}.onnx")
                    graphpress.export_onnx(candidate, path, example_inputs=(ids,), example_kwargs={"use_cache": False},
                                           int8_compute=int8)
                    session = _session(path, args.threads)
                    feeds = _feeds(session, ids)
                    with torch.no_grad():
                        expected = candidate(ids, use_cache=False).logits.numpy()
                    got = session.run(None, feeds)[0]
                    error = float(np.abs(got - expected).max() / np.abs(expected).max())
                    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                               if f.startswith(os.path.basename(path)))
                    sessions[label], facts[label] = (session, feeds), (size / 2**20, error)
            calls = {name: (lambda s=session, f=feeds: s.run(None, f)) for name, (session, feeds) in sessions.items()}
            medians = median_ms_in_blocks(calls, args.runs)
            for label, ms in medians.items():
                rows.append((label, tokens, *facts[label], ms, medians["fp32"] / ms))
                print(rows[-1], flush=True)
            sessions.clear()
            for f in os.listdir(folder):
                os.unlink(os.path.join(folder, f))
    header = (f"# Quantized SmolLM2-135M in onnxruntime {ort.__version__} (CPU EP)\n\n"
              f"Device: {_cpu_name()}, {args.threads} intra-op threads, batch 1, median of {args.runs} runs; "
              f"torch {torch.__version__}. Command: `python benchmarks/quant_onnx_latency.py --tokens "
              f"{' '.join(map(str, args.tokens))} --runs {args.runs} --threads {args.threads}`.\n"
              "error = max|onnxruntime - graphpress torch model| / max|torch| over the logits of the same file's "
              "model. speed-up = fp32 ms / variant ms at the same token count, the files timed in alternating blocks of 5 runs (graphpress.backends.onnx.side_by_side).\n\n"
              "| variant | tokens | file MiB | error vs torch | ms | speed-up vs fp32 |\n|---|---|---|---|---|---|\n")
    body = "".join(f"| {n} | {t} | {s:.1f} | {e:.2e} | {ms:.2f} | {x:.2f}x |\n" for n, t, s, e, ms, x in rows)
    args.out.write_text(header + body)
    print(header + body)


if __name__ == "__main__":
    main()
