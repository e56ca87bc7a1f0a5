"""Writing a benchmark's markdown results page: the file under benchmarks/results/ and the same lines on stdout."""

from __future__ import annotations

import argparse
import os
from typing import Sequence

__all__ = ["markdown_cell", "publish_lines", "sweep_arguments"]


def sweep_arguments(doc: str, output: str, only_help: str) -> argparse.ArgumentParser:
    """The command line every sweep shares: ``--only`` (a subset to run) and ``--output`` (default ``output``);
    the description is the first line of ``doc``.  Callers add their own options before parsing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--only", default="", help=only_help)
    parser.add_argument("--output", default=output)
    return parser


def markdown_cell(text: str) -> str:
    """``text`` safe inside a markdown table cell (a bare ``|`` would end the cell)."""
    return text.replace("|", "\\|")


def publish_lines(path: str, lines: Sequence[str]) -> None:
    """Write ``lines`` to ``path`` (its folder created if needed) and print them."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
