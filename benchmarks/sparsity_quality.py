"""Perplexity and wall time of graphpress unstructured / N:M sparsity on SmolLM2-135M (protocol of EVAL.md).

Rows: magnitude, Wanda and SparseGPT at 50% unstructured, 2:4 and 4:8; Wanda and SparseGPT at 60% and Wanda
at 50% with uniform, OWL and LAMP allocation. Decoder linears only (lm_head and embeddings stay dense).
Perplexity over the 16 evaluation windows of 512 tokens, calibration 16 windows of 512 tokens.

Run:  python benchmarks/sparsity_quality.py [--quick]   (writes benchmarks/results/sparsity_quality.md after
every row, so a partial run leaves partial results)
      python benchmarks/sparsity_quality.py --storage   (only prints the size-on-disk table of save_sparse for
magnitude-pruned SmolLM2 at 50%, 60% and 2:4, fp32 and bf16, against plain safetensors)
"""

from __future__ import annotations

import argparse
import copy
import gc
import tempfile
import time
from pathlib import Path

import torch

from graphpress.eval import calibration_windows, evaluation_windows, perplexity
from graphpress.models import load_smollm2
from graphpress.sparsity import parse_pattern, save_sparse, sparsify_model

RESULTS = Path(__file__).parent / "results" / "sparsity_quality.md"
RUNS = [  # (ratio, pattern, method, allocation), most important first
    *[(0.5, None, m, "uniform") for m in ("magnitude", "wanda", "sparsegpt")],
    *[(None, "2:4", m, "uniform") for m in ("wanda", "sparsegpt")],
    *[(0.6, None, "wanda", a) for a in ("uniform", "owl", "lamp")],
    (None, "2:4", "magnitude", "uniform"),
    *[(None, "4:8", m, "uniform") for m in ("wanda", "sparsegpt", "magnitude")],
    *[(0.5, None, "wanda", a) for a in ("owl", "lamp")],
    *[(0.6, None, "sparsegpt", a) for a in ("uniform", "owl", "lamp")],
    *[(0.5, None, "sparsegpt", a) for a in ("owl", "lamp")],
]
COLUMNS = ["setting", "method", "allocation", "ppl", "ppl / dense", "realised ratio", "compress s", "command"]


def measured_rows(path: Path) -> list[list[str]]:
    """Rows already in the results file (``--resume`` keeps them and skips their runs)."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


def write(rows: list[list[str]], preamble: str, path: Path) -> None:
    lines = [preamble, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n")


def storage_table() -> None:
    """Bytes on disk of save_sparse vs plain safetensors (tied lm_head stored once in both)."""
    from safetensors.torch import save_model

    model, _ = load_smollm2()
    print("| setting | dtype | safetensors MiB | sparse MiB | ratio | sparse tensors |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for ratio, pattern_text in ((0.5, None), (0.6, None), (None, "2:4")):
            for dtype in (torch.float32, torch.bfloat16):
                candidate = copy.deepcopy(model).to(dtype)
                pattern = parse_pattern(ratio, pattern_text)
                sparsify_model(candidate, pattern, method="magnitude")
                dense_path, sparse_path = Path(folder) / "dense.safetensors", Path(folder) / "sparse.safetensors"
                save_model(candidate, str(dense_path))
                info = save_sparse(candidate, sparse_path)
                dense_mib, sparse_mib = dense_path.stat().st_size / 2**20, info.bytes_on_disk / 2**20
                print(f"| {pattern} | {str(dtype).removeprefix('torch.')} | {dense_mib:.1f} | {sparse_mib:.1f} | "
                      f"{sparse_mib / dense_mib:.3f} | {info.sparse_tensors} |", flush=True)
                del candidate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 evaluation and 8 calibration windows (smoke run)")
    parser.add_argument("--storage", action="store_true", help="print the size-on-disk table only")
    parser.add_argument("--resume", action="store_true", help="keep the rows of the results file, run the others")
    parser.add_argument("--only", default="", help="run only the rows whose sparsify{...} text contains this")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="where the model is pruned and evaluated (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.storage:
        storage_table()
        return
    torch.manual_seed(0)
    preamble = (
        "# Unstructured and N:M sparsity quality (graphpress)\n\n"
        f"SmolLM2-135M on {torch.cuda.get_device_name(0) if args.device.startswith('cuda') else 'the CPU'} "
        f"({torch.get_num_threads()} CPU threads), torch {torch.__version__}. "
        "Command: `python benchmarks/sparsity_quality.py`" + (" --quick (smoke run)" if args.quick else "") + ".\n"
        "Decoder linears pruned (lm_head and embeddings dense); ppl over 16x512 evaluation tokens; calibration "
        "16x512 tokens. realised ratio = zeros / weights over the pruned linears. compress s = wall seconds of "
        "sparsify_model (calibration included). Each row: `graphpress.optimize(model, \"sparsify{...}\", "
        "calibration=windows)` does the same through the pass."
    )
    model, tokenizer = load_smollm2()
    model.to(args.device)
    evaluation = evaluation_windows(tokenizer, n_windows=4 if args.quick else 16)
    calibration = calibration_windows(tokenizer, n_windows=8 if args.quick else 16)
    rows = measured_rows(args.output) if args.resume else []
    if rows and rows[0][0] == "dense fp32":
        dense = float(rows[0][3])
    else:
        started = time.perf_counter()
        dense = perplexity(model, evaluation)
        rows = [["dense fp32", "-", "-", f"{dense:.3f}", "1.000", "0", f"{time.perf_counter() - started:.0f} (eval)",
                 "-"]]
        print(rows[-1], flush=True)
        write(rows, preamble, args.output)
    for ratio, pattern_text, method, allocation in RUNS:
        option = f"pattern={pattern_text}" if pattern_text else f"ratio={ratio}"
        command = f"`sparsify{{{option},method={method},allocation={allocation}}}`"
        if any(row[-1] == command for row in rows) or args.only not in command:
            continue
        gc.collect()
        candidate = copy.deepcopy(model)
        pattern = parse_pattern(ratio, pattern_text)
        try:
            report = sparsify_model(candidate, pattern, method=method, allocation=allocation,
                                    calibration=None if method == "magnitude" and allocation != "owl" else calibration)
            ppl = perplexity(candidate, evaluation)
        except Exception as exc:  # noqa: BLE001 - one failing row is reported, the others still run
            rows.append([str(pattern), method, allocation, f"error: {type(exc).__name__}: {exc}"[:200], "-", "-",
                         "-", command])
            write(rows, preamble, args.output)
            continue
        rows.append([str(pattern), method, allocation, f"{ppl:.3f}", f"{ppl / dense:.3f}",
                     f"{report.overall_ratio:.4f}", f"{report.seconds:.0f}", command])
        print(rows[-1], flush=True)
        write(rows, preamble, args.output)
        del candidate


if __name__ == "__main__":
    main()
