"""``graphpress passes``: every registered pass with its options and one line of help."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..passes import list_passes

__all__ = ["add_parser", "passes_markdown", "passes_text", "readme_with_pass_table"]

_TABLE = re.compile(r"(<!-- passes:begin -->\n).*?(\n?<!-- passes:end -->)", re.S)


def add_parser(sub) -> None:
    p = sub.add_parser("passes", help="list every registered pass with its options")
    p.add_argument("--markdown", action="store_true", help="print the README's pass table")
    p.add_argument("--update-readme", metavar="README", help="rewrite the pass table inside this README")
    p.set_defaults(run=run)


def passes_text() -> str:
    lines = []
    for cls in list_passes():
        flags = " [exact]" if cls.exact else ""
        flags += " [needs calibration]" if cls.needs_calibration else ""
        lines.append(f"{cls.name}{flags}\n    {cls.summary}")
        lines += [f"    - {opt.describe()}" for opt in cls.options]
    return "\n".join(lines)


def passes_markdown() -> str:
    rows = ["| pass | what it does | options |", "|---|---|---|"]
    for cls in list_passes():
        opts = "<br>".join(f"`{o.name}` ({o.kind}, default `{o.default}`): {o.help}" for o in cls.options) or "-"
        exact = " Exact." if cls.exact else ""
        rows.append(f"| `{cls.name}` | {cls.summary}{exact} | {opts} |")
    return "\n".join(rows)


def readme_with_pass_table(readme_text: str) -> str:
    """The README text with the table between its passes markers regenerated from the registry."""
    if not _TABLE.search(readme_text):
        raise ValueError("the README has no <!-- passes:begin --> ... <!-- passes:end --> markers")
    return _TABLE.sub(lambda m: m.group(1) + passes_markdown() + "\n<!-- passes:end -->", readme_text)


def run(args: argparse.Namespace) -> int:
    if args.update_readme:
        path = Path(args.update_readme)
        path.write_text(readme_with_pass_table(path.read_text()))
        print(f"updated the pass table in {path}")
        return 0
    print(passes_markdown() if args.markdown else passes_text())
    return 0
