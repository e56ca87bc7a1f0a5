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
    p.set_defaults(run=run)


def read_calibration(path: str) -> list[str]:
    """Split a text file into paragraphs: the calibration samples the passes tokenize."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    samples = [p.strip() for p in text.split("\n\n") if p.strip()]
    if not samples:
        raise GraphpressError(f"calibration file {path} holds no text")
    return samples


def run(args: argparse.Namespace) -> int:
    from ..api import optimize

    resolve_passes(args.pipeline)  # refuse a bad pipeline before loading anything
    loaded = load_model(args.model)
    calibration = read_calibration(args.calibration) if args.calibration else None
    result, report = optimize(loaded.model, args.pipeline, calibration=calibration, tokenizer=loaded.tokenizer,
                              check=not args.no_check, repro_dir=args.repro, return_report=True)
    save_result(result, args.output, tokenizer=loaded.tokenizer)
    print(report.table())
    if args.report:
        from ..report import write_pipeline_report  # type: ignore[attr-defined]

        print(f"report: {write_pipeline_report(report, args.report)}")
    print(f"wrote {args.output}")
    return 0
