"""Resident memory of this process, and its peak over a region of code (Linux ``/proc``).

Torch's CPU allocator is invisible to ``tracemalloc``, so memory figures are taken from the kernel:
``VmRSS`` is the resident set now, ``VmHWM`` its high-water mark, which writing ``5`` to
``/proc/self/clear_refs`` resets to the current RSS. :class:`PeakResidentMemory` uses that to report how
far above its starting point a block of code pushed the process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["resident_bytes", "PeakResidentMemory"]

_STATUS = Path("/proc/self/status")


def _status_field(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise OSError(f"{field} not found in {_STATUS}")


def resident_bytes() -> int:
    """Current resident set size of this process in bytes (``VmRSS``)."""
    return _status_field("VmRSS")


class PeakResidentMemory:
    """Context manager: ``extra_bytes`` is the peak RSS reached inside it minus the RSS on entry.

    ``reset_supported`` is False where the kernel refuses to reset the high-water mark; the figure is then
    the peak since process start and only an upper bound.
    """

    def __init__(self) -> None:
        self.start_bytes = 0
        self.peak_bytes = 0
        self.reset_supported = True

    def __enter__(self) -> "PeakResidentMemory":
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.reset_supported = False
        self.start_bytes = resident_bytes()
        return self

    def __exit__(self, *exc_info: object) -> Optional[bool]:
        self.peak_bytes = _status_field("VmHWM")
        return None

    @property
    def extra_bytes(self) -> int:
        return max(self.peak_bytes - self.start_bytes, 0)
