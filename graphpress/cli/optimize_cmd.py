"""``graphpress optimize MODEL -p PIPELINE -o OUT``: run a pipeline and write the result atomically."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GraphpressError
from ..io import load_model, save_result
from ..passes import resolve_passes

__all__ = ["add_parser", "read_calibration"]


def add_parser(sub) -> None:
    p = sub.add_parser("optimize", help="run a pass pipeline on a model and write the result")
    p.add_argument("model", help="ONNX file, Hugging Face folder, or an embedded name (smollm2, minilm)")
    p.add_argument("-p", "--pipeline", required=True, help='e.g. "dce,fold-bn,prune-channels{ratio=0.3}"')
    p.add_argument("-o", "--output", required=True, help="output ONNX file or Hugging Face folder")
    p.add_argument("--calibration", metavar="FILE", help="a text file of calibration data (for torch LLMs)")
    p.add_argument("--repro", metavar="DIR", help="write a crash reproducer here if a pass fails")
    p.add_argument("--report", metavar="DIR", help="write report.html and charts here")
    p.add_argument("--no-check", action="store_true", help="skip the numeric check after each pass")
    p.add_argument("--eval", action="store_true",
                   help="measure perplexity (causal LMs) or embedding cosine (encoders) before and after")
    p.add_argument("--eval-windows", type=int, default=16, help="evaluation windows of 512 tokens (default 16)")
    p.set_defaults(run=run)


def read_calibration(path: str) -> list[str]:
    """Split a text file into paragraphs: the calibration samples the passes tokenize."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    samples = [p.strip() for p in text.split("\n\n") if p.strip()]
    if not samples:
        raise GraphpressError(f"calibration file {path} holds no text")
    return samples


def _default_calibration(passes, loaded):
    """The built-in calibration text (EVAL.md's pydoc topics) when a pass needs data and none was given."""
    if not any(p.uses_calibration() for p in passes) or loaded.tokenizer is None:
        return None
    from ..eval import calibration_windows

    print("no --calibration given: using the built-in text (pydoc topics), 32 windows of 512 tokens")
    return calibration_windows(loaded.tokenizer, n_windows=32)


def _evaluate(model, loaded, windows: int):
    """(metric name, value) of one model, per EVAL.md."""
    from ..eval import embedding_cosine, evaluation_sentences, evaluation_windows, perplexity

    if loaded.tokenizer is None:
        raise GraphpressError("--eval needs a tokenizer (a Hugging Face folder or an embedded model)")
    if hasattr(model, "generation_config") or type(model).__name__.endswith("ForCausalLM"):
        return "perplexity", perplexity(model, evaluation_windows(loaded.tokenizer, n_windows=windows))
    return "embedding cosine to original", embedding_cosine(loaded.model, model, loaded.tokenizer,
                                                            evaluation_sentences())


def run(args: argparse.Namespace) -> int:
    from ..api import optimize

    passes = resolve_passes(args.pipeline)  # refuse a bad pipeline before loading anything
    loaded = load_model(args.model)
    calibration = read_calibration(args.calibration) if args.calibration else _default_calibration(passes, loaded)
    result, report = optimize(loaded.model, args.pipeline, calibration=calibration, tokenizer=loaded.tokenizer,
                              check=not args.no_check, repro_dir=args.repro, return_report=True)
    if args.eval and loaded.kind == "torch":
        name, before = _evaluate(loaded.model, loaded, args.eval_windows)
        _, after = _evaluate(result, loaded, args.eval_windows)
        before = 1.0 if name.startswith("embedding") else before
        report.evaluation[name] = (before, after)
        print(f"{name}: {before:.4f} -> {after:.4f}")
    save_result(result, args.output, tokenizer=loaded.tokenizer)
    print(report.table())
    if args.report:
        from ..report import write_pipeline_report

        print(f"report: {write_pipeline_report(report, args.report, title=f'graphpress report: {args.model}')}")
    print(f"wrote {args.output}")
    return 0
