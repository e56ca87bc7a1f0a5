"""Crash reproducers: the graph a pass failed on plus the pipeline, enough to replay with one command.

``graphpress replay DIR`` loads ``DIR/graph.onnx`` and runs ``DIR/pipeline.txt`` on it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from ..ir import Graph
from .base import Pass

__all__ = ["write_reproducer"]


def write_reproducer(directory: str, graph: Graph, failed: Pass, ran_before: list[str], trace: str) -> str:
    """Write the reproducer atomically into ``directory`` (replacing an older one) and return its path."""
    parent = os.path.dirname(os.path.abspath(directory)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".repro-", dir=parent)
    try:
        with open(os.path.join(tmp, "pipeline.txt"), "w") as f:
            f.write(failed.pipeline_text() + "\n")
        with open(os.path.join(tmp, "traceback.txt"), "w") as f:
            f.write(trace)
        info = {"failed_pass": failed.pipeline_text(), "ran_before": ran_before, "origin": graph.origin,
                "graph": graph.name, "replay": f"graphpress replay {directory}"}
        with open(os.path.join(tmp, "info.json"), "w") as f:
            json.dump(info, f, indent=2)
        try:
            from ..backends.onnx import save_onnx

            save_onnx(graph, os.path.join(tmp, "graph.onnx"))
        except Exception as exc:  # noqa: BLE001 - the text form still helps when the graph can't be emitted
            from ..ir import format_graph

            with open(os.path.join(tmp, "graph.txt"), "w") as f:
                f.write(f"# could not write graph.onnx: {exc}\n{format_graph(graph)}\n")
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
