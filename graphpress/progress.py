"""Progress bars that appear on a terminal and stay quiet elsewhere (CI logs, pipes, ``--quiet``)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

__all__ = ["progress_enabled", "set_quiet", "progress", "track"]

T = TypeVar("T")
_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = quiet


def progress_enabled() -> bool:
    if _QUIET or os.environ.get("GRAPHPRESS_QUIET"):
        return False
    return bool(os.environ.get("GRAPHPRESS_PROGRESS")) or sys.stderr.isatty()


@contextmanager
def progress(total: int | None, desc: str) -> Iterator[object]:
    """A bar with ``update(n)`` and ``set_postfix_str(s)``; a silent stand-in when disabled."""
    if progress_enabled():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
        try:
            yield bar
        finally:
            bar.close()
    else:
        yield _Silent()


def track(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a bar: ``for block in track(blocks, "calibrating"): ...``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(total, desc) as bar:
        for item in items:
            yield item
            bar.update(1)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def set_description(self, s: str) -> None:
        pass
