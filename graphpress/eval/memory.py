"""Resident memory of this process, and its peak over a region of code (Linux ``/proc``).

Torch's CPU allocator is invisible to ``tracemalloc``, so memory figures are taken from the kernel:
``VmRSS`` is the resident set now, ``VmHWM`` its high-water mark, which writing ``5`` to
``/proc/self/clear_refs`` resets to the current RSS. :class:`PeakResidentMemory` uses that to report how
far above its starting point a block of code pushed the process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

__all__ = ["resident_bytes", "PeakResidentMemory"]

_STATUS = Path("/proc/self/status")
# A reset high-water mark may sit a few pages above the RSS read just after it.
_RESET_SLACK_BYTES = 1 << 20


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

    Where the kernel resets the high-water mark (``reset_supported``), the peak is exact. Where it refuses,
    or accepts the write but leaves ``VmHWM`` above the current RSS (some sandboxed kernels do), a thread
    samples ``VmRSS`` every ``sample_seconds`` instead, so a peak shorter than that interval can be missed.
    """

    def __init__(self, sample_seconds: float = 0.001) -> None:
        self.start_bytes = 0
        self.peak_bytes = 0
        self.reset_supported = True
        self._sample_seconds = sample_seconds
        self._stop = threading.Event()
        self._sampler: Optional[threading.Thread] = None

    def __enter__(self) -> "PeakResidentMemory":
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.reset_supported = False
        self.start_bytes = resident_bytes()
        if self.reset_supported and _status_field("VmHWM") > self.start_bytes + _RESET_SLACK_BYTES:
            self.reset_supported = False
        self.peak_bytes = self.start_bytes
        if not self.reset_supported:
            self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self._sample_seconds):
            self.peak_bytes = max(self.peak_bytes, resident_bytes())

    def __exit__(self, *exc_info: object) -> Optional[bool]:
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak_bytes = max(self.peak_bytes, resident_bytes())
        else:
            self.peak_bytes = _status_field("VmHWM")
        return None

    @property
    def extra_bytes(self) -> int:
        return max(self.peak_bytes - self.start_bytes, 0)
