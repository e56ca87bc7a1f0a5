"""Quality, size, memory and wall time of graphpress weight quantization on the real models of EVAL.md.

SmolLM2-135M (decoder linears; lm_head/embedding untouched): perplexity on the 16 evaluation windows, for
RTN / GPTQ / AWQ / HQQ at W4 g64, W3 g64, W4 per-channel, W8 per-channel, and SmoothQuant W8A8.
Calibration: 32 windows of 512 tokens from the first half of the corpus. all-MiniLM-L6-v2: mean cosine of
sentence embeddings to fp32 (512 evaluation sentences) at W8A8 SmoothQuant and W4 g128.

Run:  python benchmarks/quantization_quality.py [--quick]    (prints the table and writes
benchmarks/results/quantization_quality.md after every row, so a partial run leaves partial results)
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import time
from pathlib import Path

import torch

from graphpress.eval import (
    calibration_sentences,
    calibration_windows,
    embedding_cosine,
    evaluation_sentences,
    evaluation_windows,
    perplexity,
    resident_bytes,
)
from graphpress.models import load_minilm, load_smollm2
from graphpress.quantization import quantize_model
from graphpress.quantization.options import CALIBRATED_METHODS

RESULTS = Path(__file__).parent / "results" / "quantization_quality.md"
OUTPUT = [RESULTS]  # where write() puts the table; --out replaces it
SETTINGS = [  # (label, bits, group), most important first: a partial run still answers the goals
    ("W4 g64", 4, 64),
    ("W3 g64", 3, 64),
    ("W4 per-channel", 4, 0),
    ("W8 per-channel", 8, 0),
]
METHODS = ("rtn", "gptq", "awq", "hqq", "awq-gptq")
MIB = 2**20


class Table:
    def __init__(self, header: str, columns: list[str]) -> None:
        self.header, self.columns, self.rows = header, columns, []

    def add(self, row: list[str]) -> None:
        self.rows.append(row)
        print(" | ".join(row), flush=True)

    def markdown(self) -> str:
        lines = [self.header, "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in self.rows])


def write(tables: list[Table], preamble: str) -> None:
    OUTPUT[0].parent.mkdir(parents=True, exist_ok=True)
    OUTPUT[0].write_text(preamble + "\n\n" + "\n\n".join(t.markdown() for t in tables) + "\n")


def smollm2_rows(table: Table, tables: list[Table], preamble: str, quick: bool, device: str = "cpu",
                 settings: list[str] | None = None, methods: tuple[str, ...] = METHODS) -> None:
    model, tokenizer = load_smollm2()
    model.to(device)
    evaluation = evaluation_windows(tokenizer, n_windows=4 if quick else 16)
    calibration = calibration_windows(tokenizer, n_windows=8 if quick else 32)
    started = time.perf_counter()
    dense = perplexity(model, evaluation)
    table.add(["dense fp32", "-", f"{dense:.3f}", "1.000", "-", "-", f"{time.perf_counter() - started:.0f} (eval)", "-"])
    write(tables, preamble)
    runs = [(label, bits, group, method) for label, bits, group in SETTINGS for method in methods]
    runs.insert(8, ("W8A8 SmoothQuant a=0.5", 8, 0, "smoothquant"))
    for label, bits, group, method in runs:
        if (settings and label not in settings) or method not in (*methods, "smoothquant"):
            continue
        gc.collect()
        before = resident_bytes()
        candidate = copy.deepcopy(model)
        try:
            report = quantize_model(candidate, bits=bits, group=group, method=method,
                                    calibration=calibration if method in CALIBRATED_METHODS else None)
            gc.collect()
            resident = resident_bytes() - before
            ppl = perplexity(candidate, evaluation)
        except Exception as exc:  # noqa: BLE001 - one failing row is reported, the others still run
            table.add([label, method, f"error: {type(exc).__name__}: {exc}"[:200], "-", "-", "-", "-", "-"])
            write(tables, preamble)
            continue
        memory = f"{resident / MIB:.0f}" if device == "cpu" else "-"
        table.add([label, method, f"{ppl:.3f}", f"{ppl / dense:.3f}", f"{report.size_ratio:.3f}",
                   memory, f"{report.seconds:.0f}", str(len(report.layers))])
        write(tables, preamble)
        del candidate


def minilm_rows(table: Table, tables: list[Table], preamble: str, quick: bool) -> None:
    model, tokenizer = load_minilm()
    sentences = evaluation_sentences()
    calibration = list(calibration_sentences()[: 64 if quick else 256])
    runs = [("W8A8 SmoothQuant a=0.5", 8, 0, "smoothquant")] + [("W4 g128", 4, 128, m) for m in METHODS]
    for label, bits, group, method in runs:
        candidate = copy.deepcopy(model)
        report = quantize_model(candidate, bits=bits, group=group, method=method, ignore=("pooler*",),
                                calibration=calibration if method in CALIBRATED_METHODS else None,
                                tokenizer=tokenizer)
        cosine = embedding_cosine(model, candidate, tokenizer, sentences, max_sentences=128 if quick else 512)
        table.add([label, method, f"{cosine:.4f}", f"{report.size_ratio:.3f}", f"{report.seconds:.1f}",
                   str(len(report.layers))])
        write(tables, preamble)


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device.startswith("cuda") else "the CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows and sentences (smoke run)")
    # On a CPU shared with other jobs, two threads per small op spend more time waiting on each other than
    # computing (GPTQ's column sweep: 8 s on two threads vs 0.12 s on one); pass --threads 2 on an idle machine.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--only", choices=("minilm", "smollm2"), help="run one model's table")
    parser.add_argument("--out", type=Path, default=None, help=f"markdown file to write (default {RESULTS})")
    parser.add_argument("--device", default="cpu", help="where SmolLM2 is quantized and evaluated (cpu, cuda)")
    parser.add_argument("--settings", default="", help="comma-separated setting labels to run (default all), "
                        "e.g. 'W4 g64,W3 g64'")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default %(default)s)")
    args = parser.parse_args()
    if args.out is not None:
        OUTPUT[0] = args.out
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    preamble = (
        "# Weight quantization quality (graphpress)\n\n"
        f"Measured on {_device_name(args.device)} ({torch.get_num_threads()} CPU threads, {os.cpu_count()} cores), "
        f"torch {torch.__version__}. "
        "Command: `python benchmarks/quantization_quality.py`" + (" --quick (smoke run)" if args.quick else "") + ".\n"
        "SmolLM2: decoder linears quantized (lm_head/embeddings fp32), perplexity over 16x512 evaluation tokens, "
        "calibration 32x512 tokens. size ratio = state_dict bytes of the quantized linears / their fp32 bytes. "
        "RSS = resident memory added by the quantized copy of the model (the fp32 copy takes ~520 MiB). "
        "time = wall seconds of quantize_model (calibration included)."
    )
    minilm = Table("## all-MiniLM-L6-v2: embedding cosine to fp32",
                   ["setting", "method", "cosine", "size ratio", "time s", "layers"])
    smol = Table("## SmolLM2-135M: perplexity",
                 ["setting", "method", "ppl", "ppl / dense", "size ratio", "RSS MiB", "time s", "layers"])
    tables = [minilm, smol]
    if args.only != "smollm2":
        minilm_rows(minilm, tables, preamble, args.quick)
    if args.only != "minilm":
        smollm2_rows(smol, tables, preamble, args.quick, args.device,
                     [x.strip() for x in args.settings.split(",") if x.strip()],
                     tuple(x.strip() for x in args.methods.split(",") if x.strip()))


if __name__ == "__main__":
    main()
