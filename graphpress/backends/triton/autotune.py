"""Choosing a launch configuration once per GPU and problem shape, and remembering it on disk.

Users of other int4 libraries complain of 1-3 minute autotunes paid again in every process.  Here a
choice is timed once (each candidate replayed in a CUDA graph, a few ms each) and written to a JSON file under
``$GRAPHPRESS_CACHE_DIR`` (default ``~/.cache/graphpress``), keyed by GPU name, Triton version, path,
bits, group, M bucket, N and K.  A second process reads the file and launches the stored choice at once.

M is bucketed (1, then powers of two up to 64, then multiples of 64 up to 512) so that a decode loop
with a growing batch does not retune at every size.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable

import triton
from graphpress.backends.triton.configs import PATH_REVISIONS, LaunchConfig
from graphpress.backends.triton.timing import graph_time_us

__all__ = ["cache_path", "m_bucket", "tuning_key", "AutotuneCache", "pick_fastest"]

_log = logging.getLogger("graphpress")


def cache_path() -> Path:
    """The JSON file that holds every tuned choice of this user (``$GRAPHPRESS_CACHE_DIR`` overrides)."""
    root = os.environ.get("GRAPHPRESS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "graphpress")
    return Path(root) / "triton_autotune.json"


def m_bucket(m: int) -> int:
    """The M a tuned choice is stored under."""
    if m <= 1:
        return 1
    if m <= 64:
        return 1 << (m - 1).bit_length()
    return min(-(-m // 64) * 64, 512)


def tuning_key(device_name: str, path: str, bits: int, group: int, m: int, n: int, k: int, dtype: str) -> str:
    """A readable key: everything the best launch depends on (the path with its candidates' revision)."""
    revision = PATH_REVISIONS.get(path)
    path = f"{path} r{revision}" if revision else path
    return f"{device_name}|triton {triton.__version__}|{path}|int{bits} g{group}|{dtype}|M{m_bucket(m)} N{n} K{k}"


class AutotuneCache:
    """In-memory view of the on-disk cache; reads the file once, merges and rewrites it on each new entry."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._entries: dict[str, dict[str, int]] | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path or cache_path()

    def _read_file(self) -> dict[str, dict[str, int]]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            _log.warning("graphpress: ignoring unreadable autotune cache %s (%s)", self.path, err)
            return {}

    def get(self, key: str) -> LaunchConfig | None:
        """The stored choice for ``key``, or None."""
        with self._lock:
            if self._entries is None:
                self._entries = self._read_file()
            entry = self._entries.get(key)
        return LaunchConfig(**entry) if entry else None

    def put(self, key: str, config: LaunchConfig) -> None:
        """Store a choice and rewrite the file atomically (other processes' entries are kept)."""
        with self._lock:
            merged = self._read_file()
            merged.update(self._entries or {})
            merged[key] = config.to_dict()
            self._entries = merged
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
                os.replace(tmp, self.path)
            except OSError as err:
                # A read-only home must not stop inference; the choice still lives in memory.
                _log.warning("graphpress: could not write autotune cache %s (%s)", self.path, err)


def pick_fastest(candidates: list[LaunchConfig], make_call: Callable[[LaunchConfig, int], Callable[[], None]],
                 rotation: int) -> tuple[LaunchConfig, float]:
    """Time every candidate and return the fastest with its microseconds per call.

    ``make_call(config)`` returns closures over ``rotation`` different operand copies (one per call
    index, see :func:`~graphpress.backends.triton.timing.graph_time_us`), so a candidate is timed on
    weights read from device memory, without launch overhead, as it will run inside a decode graph.
    A candidate that fails to compile or launch (too much shared memory, say) is skipped.
    """
    best: tuple[LaunchConfig, float] | None = None
    for config in candidates:
        try:
            us = graph_time_us([make_call(config, i) for i in range(rotation)], replays=5)
        except Exception as err:  # noqa: BLE001 - any compile/launch failure just disqualifies the candidate
            _log.debug("graphpress: autotune candidate %s failed: %s", config, err)
            continue
        if best is None or us < best[1]:
            best = (config, us)
    if best is None:
        raise RuntimeError(f"no launch configuration ran among {len(candidates)} candidates")
    return best
