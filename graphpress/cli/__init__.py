"""The ``graphpress`` command line: passes, inspect, optimize, merge, replay.

Errors graphpress raises on purpose print as one clear message and exit with status 2 (no traceback;
set GRAPHPRESS_DEBUG=1 to see one). Nothing is written when a command fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import GraphpressError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from . import inspect_cmd, optimize_cmd, passes_cmd, replay_cmd

    parser = argparse.ArgumentParser(prog="graphpress", description="Compress neural networks like a compiler.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (passes_cmd, inspect_cmd, optimize_cmd, replay_cmd):
        module.add_parser(sub)
    from ..merging.cli import build_merge_parser, run_merge

    merge = sub.add_parser("merge", help="merge same-architecture checkpoints (task arithmetic, TIES, DARE, ...)")
    build_merge_parser(merge)
    merge.set_defaults(run=run_merge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        from ..progress import set_quiet

        set_quiet(True)
    try:
        return int(args.run(args) or 0)
    except GraphpressError as exc:
        if os.environ.get("GRAPHPRESS_DEBUG"):
            raise
        print(f"graphpress: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graphpress: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
