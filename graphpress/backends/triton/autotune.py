"""Choosing a launch configuration once per GPU and problem shape, and remembering it on disk.

Users of other int4 libraries complain of 1-3 minute autotunes paid again in every process.  Here a
choice is timed once (each candidate replayed in a CUDA graph, a few ms each, compiling being what costs;
:func:`staged_search`, opt-in, times every tile but only the best tiles' K splits) and written to a JSON file under
``$GRAPHPRESS_CACHE_DIR`` (default ``~/.cache/graphpress``), keyed by GPU name, Triton version, path,
bits, group, M bucket, N and K.  A second process reads the file and launches the stored choice at once.

M is bucketed (1, then powers of two up to 64, then multiples of 64 up to 512) so that a decode loop
with a growing batch does not retune at every size.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

import triton
from graphpress.backends.triton.configs import PATH_REVISIONS, LaunchConfig
from graphpress.backends.triton.timing import graph_time_us

__all__ = ["cache_path", "m_bucket", "tuning_key", "AutotuneCache", "pick_fastest", "staged_search"]

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
        if not entry:
            return None
        try:
            return LaunchConfig(**entry)
        except TypeError:  # written by another graphpress version: tune again rather than fail
            return None

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


def _time_on_gpu(make_call: Callable[[LaunchConfig, int], Callable[[], None]],
                 rotation: int) -> Callable[[LaunchConfig], float | None]:
    def time_of(config: LaunchConfig) -> float | None:
        try:
            return graph_time_us([make_call(config, i) for i in range(rotation)], replays=5)
        except Exception as err:  # noqa: BLE001 - any compile/launch failure just disqualifies the candidate
            _log.debug("graphpress: autotune candidate %s failed: %s", config, err)
            return None
    return time_of


def staged_search(candidates: list[LaunchConfig], time_of: Callable[[LaunchConfig], float | None],
                  programs: Callable[[LaunchConfig], int], multiprocessors: int,
                  keep: int = 4) -> tuple[LaunchConfig, float, int]:
    """The fastest candidate, found in two rounds: (config, microseconds, candidates timed).

    Every K-split count is a compiled variant of its own, and compiling dominates a tune, so timing all of
    them (130-210 for one batch-1 shape) took 1-2 minutes.  Round one times each tile (everything but the
    split) once, at the split that comes closest to four programs per multiprocessor; round two times every
    split of the ``keep`` fastest tiles.  A tile whose best split is far from that one could be ranked too
    low, so ``keep`` is a margin, not one.  ``time_of`` returns None for a candidate that does not run.
    """
    tiles: dict[LaunchConfig, list[LaunchConfig]] = {}
    for config in candidates:
        tiles.setdefault(replace(config, split_k=1), []).append(config)
    target = 4 * multiprocessors
    timed: dict[LaunchConfig, float | None] = {}
    ranked = []
    for tile, splits in tiles.items():
        probe = min(splits, key=lambda c: abs(math.log(max(programs(c), 1) / target)))
        timed[probe] = time_of(probe)
        if timed[probe] is not None:
            ranked.append((timed[probe], tile))
    for _, tile in sorted(ranked, key=lambda r: r[0])[:keep]:
        for config in tiles[tile]:
            if config not in timed:
                timed[config] = time_of(config)
    config, us = _fastest(timed, len(candidates))
    return config, us, len(timed)


def _fastest(timed: dict[LaunchConfig, float | None], candidates: int) -> tuple[LaunchConfig, float]:
    """The fastest of the timed configurations that ran (the first one on a tie)."""
    ran = [(us, config) for config, us in timed.items() if us is not None]
    if not ran:
        raise RuntimeError(f"no launch configuration ran among {candidates} candidates")
    us, config = min(ran, key=lambda r: r[0])
    return config, us


def pick_fastest(candidates: list[LaunchConfig], make_call: Callable[[LaunchConfig, int], Callable[[], None]],
                 rotation: int, programs: Callable[[LaunchConfig], int] | None = None,
                 multiprocessors: int = 0) -> tuple[LaunchConfig, float]:
    """Time the candidates and return the fastest with its microseconds per call.

    ``make_call(config, i)`` returns the call on operand copy ``i`` of ``rotation`` (see
    :func:`~graphpress.backends.triton.timing.graph_time_us`), so a candidate is timed on weights read from
    device memory, without launch overhead, as it will run inside a decode graph.  With ``programs`` (the grid
    size of a candidate) and ``multiprocessors`` the search is :func:`staged_search`; without, every candidate
    is timed.  A candidate that fails to compile or launch (too much shared memory, say) is skipped.
    """
    time_of = _time_on_gpu(make_call, rotation)
    if programs is not None and multiprocessors:
        config, us, _ = staged_search(candidates, time_of, programs, multiprocessors)
        return config, us
    return _fastest({config: time_of(config) for config in candidates}, len(candidates))
