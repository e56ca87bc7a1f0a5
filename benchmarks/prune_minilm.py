"""Structured pruning of all-MiniLM-L6-v2 (EVAL.md protocol): 25% of the encoder's parameters removed (attention
heads and MLP channels), mean cosine of mean-pooled sentence embeddings to the original's, for every row asked.

    PYTHONPATH=. python benchmarks/prune_minilm.py [--ratio 0.25] [--rows wanda,flap+bias,wanda+ls/mlp:local]

A row is a criterion (``l2``, ``taylor``, ``wanda``, ``flap``, ``come``) with an optional recovery suffix
``+bias`` (``compensate-bias``) or ``+ls`` (``reconstruct``), an optional unit set ``/mlp`` (MLP channels only,
``*.attention.*`` ignored) or ``/heads`` (attention heads only, the ``prune-heads`` pass) -- by default both
heads and MLP channels are in scope --, an optional ``:local`` (``scope=local``; default ``scope=global``
with the pass's default standardization) and an optional ``@ratio``. BERT's coupling groups per layer are one
head group (unit = 1 head of 32 dims: its q/k/v rows and attention.output columns) and one MLP group (unit =
1 intermediate channel); the hidden size is out of scope (tied to the embeddings, LayerNorms and residuals).

``ratio`` is the fraction of ENCODER parameters removed (``encoder.*``: embeddings and the pooler, which
sentence-transformers does not use, are excluded). The in-scope ratio passed to the pass is scaled by
encoder / in-scope parameters; the realised fraction is counted from the pruned model.

Calibration: the first ``--calibration-sentences`` sentences of the first half of the EVAL.md text, each its
own unpadded sample (``--sentences-per-sample N`` joins N at a time; taylor backpropagates the first 8
samples, and its loss on an encoder is the mean square of the last hidden state). Sentence-sized samples
matter: calibrated on 8-sentence passages, the least-squares refit matches the statistics of long inputs
(where [CLS]/[SEP] are a small share of the tokens) and measured 0.66 instead of 0.95 for wanda+ls. Evaluation: every sentence of
the second half (``graphpress.eval.evaluation_sentences``), embedded by attention-masked mean pooling as
sentence-transformers does for this model (``graphpress.eval.mean_pooled_embeddings``, 256 tokens max);
reported: mean and 5th-percentile cosine to the original embedding, and the nearest-neighbour agreement
(fraction of sentences whose most similar other sentence is unchanged, a small retrieval task).

Writes benchmarks/results/prune_minilm.md (``--output`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import torch
import torch.nn.functional as F

import graphpress
from graphpress.eval import calibration_sentences, evaluation_sentences, mean_pooled_embeddings
from graphpress.models.zoo import load_minilm
from graphpress.testing.results import markdown_cell, publish_lines

RESULTS = os.path.join(os.path.dirname(__file__), "results", "prune_minilm.md")
CRITERIA = ("l2", "taylor", "wanda", "flap", "come")
DEFAULT_ROWS = ",".join(c + s for c in CRITERIA for s in ("", "+bias", "+ls"))
_RECOVERY = {"bias": "compensate-bias", "ls": "reconstruct"}


def encoder_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder."))


def head_params(model: torch.nn.Module) -> int:
    """Parameters the head groups prune: q/k/v weights and biases, attention.output.dense's weight."""
    return sum(p.numel() for n, p in model.named_parameters()
               if ".attention.self." in n or n.endswith(".attention.output.dense.weight"))


def mlp_params(model: torch.nn.Module) -> int:
    """Parameters the MLP groups prune: intermediate.dense weight and bias, output.dense's weight."""
    return sum(p.numel() for n, p in model.named_parameters()
               if ".intermediate.dense." in n or (n.endswith(".output.dense.weight") and ".attention." not in n))


def pipeline_of(row: str, default_ratio: float, model: torch.nn.Module) -> str:
    """The pipeline string of a row name such as ``flap+bias/mlp:local@0.3`` (see the module docstring)."""
    name, _, ratio_text = row.partition("@")
    ratio = float(ratio_text) if ratio_text else default_ratio
    name, _, scope = name.partition(":")
    name, _, units = name.partition("/")
    importance, *recovery = name.split("+")
    in_scope = {"": head_params(model) + mlp_params(model), "mlp": mlp_params(model),
                "heads": head_params(model)}[units]
    options = [f"ratio={round(ratio * encoder_params(model) / in_scope, 4)}", f"importance={importance}",
               f"scope={scope or 'global'}"]
    if units == "mlp":
        options.append("ignore=*.attention.*")
    prune = ("prune-heads" if units == "heads" else "prune-channels") + "{" + ",".join(options) + "}"
    return ",".join([prune] + [_RECOVERY[r] for r in recovery])


def calibration_samples(n_sentences: int, per_sample: int) -> list[str]:
    sentences = calibration_sentences()[:n_sentences]
    return [" ".join(sentences[i : i + per_sample]) for i in range(0, len(sentences), per_sample)]


def compare(reference: torch.Tensor, embeddings: torch.Tensor) -> tuple[float, float, float]:
    """(mean cosine, 5th-percentile cosine, nearest-neighbour agreement) of embeddings to the reference."""
    cos = F.cosine_similarity(reference.double(), embeddings.double(), dim=-1)

    def neighbours(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.double(), dim=-1)
        sim = x @ x.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(1)

    agree = (neighbours(reference) == neighbours(embeddings)).double().mean().item()
    return cos.mean().item(), torch.quantile(cos, 0.05).item(), agree


def main() -> None:
    sys.setrecursionlimit(100000)  # the pass manager deep-copies the graph for rollback
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.25, help="fraction of encoder parameters to remove")
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="comma-separated rows, e.g. wanda,flap+bias/mlp:local")
    parser.add_argument("--calibration-sentences", type=int, default=512)
    parser.add_argument("--sentences-per-sample", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer = load_minilm()
    sentences = evaluation_sentences()
    calibration = calibration_samples(args.calibration_sentences, args.sentences_per_sample)
    reference = mean_pooled_embeddings(model, tokenizer, sentences)
    dense = encoder_params(model)
    rows = [("dense", "-", dense, 1.0, 1.0, 1.0, 0.0, "")]
    for row in args.rows.split(","):
        pipeline = pipeline_of(row, args.ratio, model)
        start = time.perf_counter()
        try:
            pruned = graphpress.optimize(model, pipeline, calibration=calibration, tokenizer=tokenizer, check=False)
        except Exception as error:  # recorded in the table, not hidden
            traceback.print_exc()
            message = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            rows.append((row, pipeline, None, None, None, None, time.perf_counter() - start, message))
            print(rows[-1], flush=True)
            continue
        seconds = time.perf_counter() - start
        mean, low, agree = compare(reference, mean_pooled_embeddings(pruned, tokenizer, sentences))
        rows.append((row, pipeline, encoder_params(pruned), mean, low, agree, seconds, ""))
        print(rows[-1], f"removed {1 - rows[-1][2] / dense:.2%}", flush=True)
    header = ("| row | pipeline | encoder params | encoder removed | mean cosine | p5 cosine | NN agreement "
              "| compression time s | error |")
    lines = [f"Command: `PYTHONPATH=. python benchmarks/prune_minilm.py --threads {args.threads} --ratio {args.ratio} "
             f"--calibration-sentences {args.calibration_sentences} --sentences-per-sample "
             f"{args.sentences_per_sample} --rows {args.rows}`; evaluation: {len(sentences)} sentences; torch "
             f"{torch.__version__}.", "", header, "|---|---|---|---|---|---|---|---|---|"]
    for name, pipe, params, mean, low, agree, secs, error in rows:
        pipe = markdown_cell(pipe)
        if params is None:
            lines.append(f"| {name} | `{pipe}` | - | - | - | - | - | {secs:.1f} | {error.replace('|', '/')} |")
        else:
            lines.append(f"| {name} | `{pipe}` | {params:,} | {1 - params / dense:.1%} | {mean:.4f} | {low:.4f} | "
                         f"{agree:.3f} | {secs:.1f} | |")
    publish_lines(args.output, lines)


if __name__ == "__main__":
    main()
