"""Structured pruning of the real SmolLM2-135M (EVAL.md protocol): perplexity before/after, save + reload,
20 generated tokens, for every row asked for.

    PYTHONPATH=. python benchmarks/prune_smollm2.py [--ratio 0.2] [--calibration-windows 8] [--rows wanda,flap+bias]

A row is a criterion (``l2``, ``taylor``, ``wanda``, ``flap``, ``come``) with optional recovery suffixes
``+bias`` (``compensate-bias``) and ``+ls`` (``reconstruct``), optionally ``/heads`` or ``/all``, optionally
``:kind`` (or another ``standardize`` choice), and optionally ``@ratio`` (e.g. ``flap+bias:kind@0.3``). Every
row ranks units across layers (``scope=global``, with the pass's default standardization: z-score per group
for wanda/flap/come, divide by the group mean for l2/taylor) and leaves the hidden size whole
(``ignore=model.embed_tokens`` keeps the residual-stream group out of scope); it prunes MLP channels only
(``*.self_attn*`` ignored) unless ``/heads`` is given: SmolLM2 has 3 KV heads a layer, so an attention unit is
a third of a layer's attention. For these rows ``ratio`` is the EVAL.md ratio, the fraction of decoder-layer
parameters removed: the in-scope ratio passed to the pass is scaled by decoder / in-scope parameters.
``/all`` is the original definition of this benchmark's ``l2``/``taylor`` rows: every coupled dimension, the
hidden size included, ``scope=local``, and ``ratio`` passed as is (a fraction of the in-scope parameters).

Writes benchmarks/results/prune_smollm2.md (``--output`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

import graphpress
from graphpress.backends.hf_reload import load_pruned
from graphpress.eval import calibration_windows, evaluation_windows, perplexity
from graphpress.models.zoo import load_smollm2
from graphpress.testing.results import markdown_cell, publish_lines

RESULTS = os.path.join(os.path.dirname(__file__), "results", "prune_smollm2.md")
DEFAULT_ROWS = "l2/all,taylor/all"
_RECOVERY = {"bias": "compensate-bias", "ls": "reconstruct"}


def pipeline_of(row: str, default_ratio: float, decoder: int, mlp: int) -> str:
    """The pipeline string of a row name such as ``flap+bias@0.3`` (see the module docstring)."""
    name, _, ratio_text = row.partition("@")
    ratio = float(ratio_text) if ratio_text else default_ratio
    name, _, standardize = name.partition(":")
    name, _, heads = name.partition("/")
    importance, *recovery = name.split("+")
    if heads == "all":
        prune = f"prune-channels{{ratio={ratio},importance={importance}}}"
    elif heads:
        prune = f"prune-channels{{ratio={ratio},importance={importance},scope=global,ignore=model.embed_tokens}}"
    else:
        prune = (f"prune-channels{{ratio={round(ratio * decoder / mlp, 4)},importance={importance},scope=global,"
                 "ignore=model.embed_tokens|*.self_attn*}")
    if standardize:
        prune = prune[:-1] + f",standardize={standardize}}}"
    return ",".join([prune] + [_RECOVERY[r] for r in recovery])


def _decoder_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if ".layers." in n)


def _mlp_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if ".layers." in n and ".mlp." in n)


def _all_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    sys.setrecursionlimit(100000)  # the pass manager deep-copies the graph for rollback
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.2)
    parser.add_argument("--calibration-windows", type=int, default=8)
    parser.add_argument("--eval-windows", type=int, default=16)
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="comma-separated rows, e.g. wanda,flap+bias,flap+bias@0.3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    dense_decoder = _decoder_params(model)
    rows = [("dense", "-", _all_params(model), dense_decoder, dense_ppl, 0.0, "-", "-")]
    prompt = tokenizer("The Python language reference says", return_tensors="pt").input_ids
    for row in args.rows.split(","):
        pipeline = pipeline_of(row, args.ratio, dense_decoder, _mlp_params(model))
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
        rows.append((row, pipeline, _all_params(pruned), _decoder_params(pruned), ppl, seconds,
                     f"{size / 1e6:.0f} MB, reload identical: {same}", text.replace("\n", " ").replace("|", "/")))
        print(rows[-1], flush=True)
    lines = [f"# prune-channels on SmolLM2-135M (EVAL.md protocol, fp32 CPU, {args.threads} threads)", "",
             f"Command: `PYTHONPATH=. python benchmarks/prune_smollm2.py --ratio {args.ratio} "
             f"--calibration-windows {args.calibration_windows} --rows {args.rows}`; evaluation: "
             f"{args.eval_windows} windows x 512 tokens.",
             "Parameters: all (embedding tied to the LM head) and decoder layers only; 'decoder removed' is the "
             "EVAL.md ratio (biases added by compensate-bias count as kept parameters).", "",
             "| row | pipeline | params (all) | decoder params | decoder removed | ppl | ppl ratio | compression time s "
             "| saved | 20 greedy tokens after reload |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, pipe, total, decoder, ppl, secs, saved, text in rows:
        pipe = markdown_cell(pipe)
        lines.append(f"| {name} | `{pipe}` | {total:,} | {decoder:,} | {1 - decoder / dense_decoder:.1%} | {ppl:.2f} | "
                     f"{ppl / dense_ppl:.2f} | {secs:.1f} | {saved} | {text} |")
    publish_lines(args.output, lines)


if __name__ == "__main__":
    main()
