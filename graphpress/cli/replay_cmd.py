"""``graphpress replay DIR``: re-run the pass that failed on the graph saved by a crash reproducer."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GraphpressError

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("replay", help="replay a crash reproducer written by --repro")
    p.add_argument("directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..api import optimize

    folder = Path(args.directory)
    graph_file, pipeline_file = folder / "graph.onnx", folder / "pipeline.txt"
    if not graph_file.exists() or not pipeline_file.exists():
        raise GraphpressError(f"{folder} is not a graphpress crash reproducer (graph.onnx and pipeline.txt needed)")
    pipeline = pipeline_file.read_text().strip()
    print(f"replaying {pipeline} on {graph_file}")
    optimize(str(graph_file), pipeline)
    print("the pipeline ran without error")
    return 0
