"""Programmatic dependent launch (Hopper and later): a kernel's start overlaps its predecessor's end.

At decode sizes a weight-only product streams a few megabytes in a few microseconds, and a fixed cost per
launch (the launch itself, the first DRAM round trip, the last wave's tail) took 3-4.5 us of every GEMV
on the H100 (KERNEL_NOTES, run 16: 8.2 us for a 3.7 us read on ``o``).  Launched with the
programmatic-stream-serialization attribute, a kernel may begin while the previous kernel on the stream
is still finishing; it must execute ``griddepcontrol.wait`` before it touches anything that kernel may
write.  Three modes:

* ``off`` (the default): an ordinary launch.
* ``wait``: the PDL launch, and every program waits first thing: only the launch latency is hidden.
  Always safe.
* ``prefetch``: the batch-1 kernels request their first weight tile *before* waiting (the
  activations, outputs and split-K buffers only after).  This assumes the weights were not rewritten by
  the kernel just before the product, which holds for frozen inference weights: loading new weights
  into a module (``load_state_dict``, ``copy_`` of the packed tensors) is a memory copy, which PDL
  never overlaps.  Set ``GRAPHPRESS_PDL=wait`` if your code rewrites packed weights with a kernel and
  multiplies immediately after.

Each program also signals ``griddepcontrol.launch_dependents`` when it starts, so the *next* PDL-launched
kernel (graphpress's own, for instance the next layer's projection in a benchmark) can be scheduled into
free slots and fetch its weights during this kernel's tail.  Kernels that are not launched with the
attribute are unaffected: the instructions are no-ops for them.

Why off by default: measured on the H100 (KERNEL_NOTES runs 21-24), products timed back to back gain 1-2 us
each with ``prefetch``, but decoding a Llama-2-7B-shaped model gained nothing (2.40x bf16 with it, 2.46x
without, runs 22 and 24 alike): there each product follows one of inductor's kernels, which never signals
its dependents, so there is little to overlap.  It stays available for chains of graphpress
products (``GRAPHPRESS_PDL=prefetch``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

import triton
import triton.language as tl

try:  # Triton >= 3.3 exposes grid dependency control; older ones get plain launches.
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - depends on the installed Triton
    gdc_launch_dependents = gdc_wait = None

__all__ = ["PDL_OFF", "PDL_WAIT", "PDL_PREFETCH", "pdl_mode", "plain_launches", "begin_program", "start_program",
           "wait_for_producers"]

PDL_OFF, PDL_WAIT, PDL_PREFETCH = 0, 1, 2
_MODES = {"off": PDL_OFF, "0": PDL_OFF, "wait": PDL_WAIT, "prefetch": PDL_PREFETCH, "1": PDL_PREFETCH}
_capable: dict[int, bool] = {}
_plain_depth = 0


def _requested() -> int:
    value = os.environ.get("GRAPHPRESS_PDL", "off").strip().lower()
    if value not in _MODES:
        raise ValueError(f"GRAPHPRESS_PDL={value!r}: expected one of off, wait, prefetch")
    return _MODES[value]


def pdl_mode(device: torch.device) -> int:
    """The PDL mode for launches on ``device``: ``GRAPHPRESS_PDL`` where the GPU (compute capability 9 or
    later) and Triton support it, else :data:`PDL_OFF` (CPU, interpreter, older GPUs)."""
    if device.type != "cuda" or gdc_wait is None or _plain_depth or os.environ.get("TRITON_INTERPRET", "0") == "1":
        return PDL_OFF
    index = device.index if device.index is not None else torch.cuda.current_device()
    capable = _capable.get(index)
    if capable is None:
        capable = _capable[index] = torch.cuda.get_device_capability(index)[0] >= 9
    return _requested() if capable else PDL_OFF


@contextlib.contextmanager
def plain_launches() -> Iterator[None]:
    """Launch without PDL inside this block.  The autotuner times candidates this way: it replays one
    product back to back, and with PDL each launch would overlap the previous one of *its own kind*, an
    overlap a model (where an elementwise or attention kernel comes before each product) does not give,
    and which favoured launch shapes that are slower in a model."""
    global _plain_depth
    _plain_depth += 1
    try:
        yield
    finally:
        _plain_depth -= 1


@triton.jit
def start_program(PDL: tl.constexpr):
    """Let the next PDL-launched kernel be scheduled once every program of this one has started."""
    if PDL != 0:
        gdc_launch_dependents()


@triton.jit
def wait_for_producers(PDL: tl.constexpr):
    """Block until the previous kernel on the stream has finished and its writes are visible."""
    if PDL != 0:
        gdc_wait()


@triton.jit
def begin_program(PDL: tl.constexpr):
    """A PDL-aware kernel's first statement: signal the dependents, and in mode ``wait`` (1) also wait for
    the producers; mode ``prefetch`` (2) waits later, after its first weight loads."""
    start_program(PDL)
    if PDL == 1:
        wait_for_producers(PDL)
