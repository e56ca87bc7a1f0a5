"""Structured pruning of the real SmolLM2-135M (EVAL.md protocol): 20% of the prunable parameters with l2 and
with taylor importance; perplexity before/after, save + reload, 20 generated tokens.

    PYTHONPATH=. python benchmarks/prune_smollm2.py [--ratio 0.2] [--calibration-windows 8]

Writes benchmarks/results/prune_smollm2.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

import graphpress
from graphpress.backends.hf_fixups import load_pruned
from graphpress.eval import calibration_windows, evaluation_windows, perplexity
from graphpress.models.zoo import load_smollm2

RESULTS = os.path.join(os.path.dirname(__file__), "results", "prune_smollm2.md")


def _decoder_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if ".layers." in n)


def _all_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    sys.setrecursionlimit(100000)  # the pass manager deep-copies the graph for rollback
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--calibration-windows", type=int, default=8)
    parser.add_argument("--eval-windows", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_smollm2()
    # The GGUF loader marks the model quantized (so save_pretrained refuses it), but its weights are already
    # dequantized fp32: drop the marker so the pruned model saves as a plain folder.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    evaluation = evaluation_windows(tokenizer, n_windows=args.eval_windows)
    calibration = calibration_windows(tokenizer, n_windows=args.calibration_windows)
    dense_ppl = perplexity(model, evaluation)
    example = (evaluation[:1, :32],)
    rows = [("dense", "-", _all_params(model), _decoder_params(model), dense_ppl, 0.0, "-", "-")]
    prompt = tokenizer("The Python language reference says", return_tensors="pt").input_ids
    for importance in ("l2", "taylor"):
        pipeline = f"prune-channels{{ratio={args.ratio},importance={importance}}}"
        start = time.perf_counter()
        pruned = graphpress.optimize(model, pipeline, example_inputs=example,
                                     example_kwargs={"use_cache": False}, calibration=calibration, check=False)
        seconds = time.perf_counter() - start
        ppl = perplexity(pruned, evaluation)
        with tempfile.TemporaryDirectory() as folder:
            pruned.save_pretrained(folder)
            size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
            reloaded = load_pruned(folder)
            same = torch.allclose(reloaded(evaluation[:1, :64]).logits, pruned(evaluation[:1, :64]).logits, atol=1e-4)
            text = tokenizer.decode(reloaded.generate(prompt, max_new_tokens=20, do_sample=False)[0, prompt.shape[1]:])
        rows.append((importance, pipeline, _all_params(pruned), _decoder_params(pruned), ppl, seconds,
                     f"{size / 1e6:.0f} MB, reload identical: {same}", text.replace("\n", " ").replace("|", "/")))
        print(rows[-1], flush=True)
    lines = ["# prune-channels on SmolLM2-135M (EVAL.md protocol, fp32 CPU, 2 threads)", "",
             f"Command: `PYTHONPATH=. python benchmarks/prune_smollm2.py --ratio {args.ratio} "
             f"--calibration-windows {args.calibration_windows}`; evaluation: {args.eval_windows} windows x 512 tokens.",
             "Parameters: all (embedding tied to the LM head) and decoder layers only.", "",
             "| importance | pipeline | params (all) | decoder params | ppl | ppl ratio | prune time s | saved | 20 greedy tokens after reload |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, pipe, total, decoder, ppl, secs, saved, text in rows:
        lines.append(f"| {name} | `{pipe}` | {total:,} | {decoder:,} | {ppl:.2f} | {ppl / dense_ppl:.2f} | "
                     f"{secs:.1f} | {saved} | {text} |")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
