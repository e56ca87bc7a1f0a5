"""``graphpress merge``: the command-line front of :func:`graphpress.merging.merge_models`.

    graphpress merge BASE MODEL [MODEL ...] --method ties --density 0.5 --weights 1 1 --lambda 1 -o OUT

Exit status 0 on success, 2 for a refused merge or bad option (the message, which names the file or
tensor at fault, goes to stderr; no output folder is written).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from graphpress.errors import GraphpressError
from graphpress.merging.merge import merge_models
from graphpress.merging.registry import available_merge_methods
from graphpress.progress import set_quiet

__all__ = ["build_merge_parser", "main_merge", "run_merge"]


def build_merge_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the merge arguments to ``parser`` (a subcommand's parser), or make a standalone one."""
    parser = parser or argparse.ArgumentParser(prog="graphpress merge", description="Merge fine-tuned checkpoints.")
    methods = available_merge_methods()
    parser.add_argument("base", help="the base model folder the fine-tunes started from")
    parser.add_argument("models", nargs="+", help="fine-tuned model folders to merge")
    parser.add_argument(
        "--method",
        default="linear",
        choices=sorted(methods),
        help="; ".join(f"{name}: {description}" for name, description in methods.items()),
    )
    parser.add_argument("--weights", type=float, nargs="+", help="one weight per model (default 1 each)")
    parser.add_argument("--density", type=float, help="fraction of each delta kept (ties, dare_*)")
    parser.add_argument("--lambda", dest="lambda_", type=float, default=1.0, help="scale of the merged delta")
    parser.add_argument("--seed", type=int, default=0, help="seed of DARE's random drops")
    parser.add_argument("-o", "--output", required=True, help="output folder (replaced atomically if it exists)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main_merge(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (without the program and subcommand names), merge, and return the exit status."""
    return run_merge(build_merge_parser().parse_args(argv))


def run_merge(arguments: argparse.Namespace) -> int:
    """Merge as the parsed command line says; return the exit status."""
    if arguments.quiet:
        set_quiet(True)
    started = time.perf_counter()
    try:
        output = merge_models(
            arguments.base,
            arguments.models,
            method=arguments.method,
            weights=arguments.weights,
            density=arguments.density,
            lambda_=arguments.lambda_,
            seed=arguments.seed,
            output=arguments.output,
        )
    except GraphpressError as error:
        print(f"graphpress merge: error: {error}", file=sys.stderr)
        return 2
    print(
        f"merged {len(arguments.models)} models with {arguments.method} into {output} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main_merge())
