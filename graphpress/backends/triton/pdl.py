"""Programmatic dependent launch (Hopper and later): a kernel's start overlaps its predecessor's end.

At decode sizes a weight-only product streams a few megabytes in a few microseconds, and a fixed cost per
launch (the launch itself, the first DRAM round trip, the last wave's tail) took 3-4.5 us of every GEMV
on the H100 (KERNEL_NOTES, run 16: 8.2 us for a 3.7 us read on ``o``).  Launched with the
programmatic-stream-serialization attribute, a kernel may begin while the previous kernel on the stream
is still finishing; it must execute ``griddepcontrol.wait`` before it touches anything that kernel may
write.  ``GRAPHPRESS_PDL`` picks one of four modes:

* ``chain`` (the default): only a product whose input is written by the graphpress product launched just
  before it (``TritonQuantLinear.follows_product``, set for the down projection of a :class:`GatedMLP`,
  whose gate-up kernel writes the activated input) is launched with the attribute, prefetching as below;
  every batch-1 kernel signals ``launch_dependents`` so that such a successor can be scheduled early.
  Every other product is an ordinary launch.
* ``off``: ordinary launches, no grid-dependency instruction in any kernel.
* ``wait``: every batch-1 product is launched with the attribute and waits first thing: only the launch
  latency is hidden.  Always safe.
* ``prefetch``: every batch-1 product is launched with the attribute and requests its first weight tile
  *before* waiting (the activations, outputs and split-K buffers only after).

Prefetching assumes the weights were not rewritten by the kernel just before the product, which holds
for frozen inference weights: loading new weights into a module (``load_state_dict``, ``copy_`` of the
packed tensors) is a memory copy, which PDL never overlaps.  Set ``GRAPHPRESS_PDL=off`` (or ``wait``) if
your code rewrites packed weights with a kernel and multiplies immediately after.

Why only chains by default: measured on the H100 (KERNEL_NOTES runs 21-24), products timed back to back
gain 1-2 us each with ``prefetch``, but decoding a Llama-2-7B-shaped model with every product launched
that way was 2% slower than with none (runs 22 and 24): there most products follow one of inductor's
kernels, which never signals its dependents, so there is nothing to overlap and the attribute costs
about half a microsecond per launch.  A gated MLP's down projection follows graphpress's own gate-up
kernel, which signals.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

import triton
import triton.language as tl
from graphpress.backends.triton.gpu_facts import gpu_facts

try:  # Triton >= 3.3 exposes grid dependency control; older ones get plain launches.
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
except ImportError:  # pragma: no cover - depends on the installed Triton
    gdc_launch_dependents = gdc_wait = None

__all__ = ["PDL_OFF", "PDL_WAIT", "PDL_PREFETCH", "PDL_SIGNAL", "PDL_CHAIN", "pdl_mode", "launch_arguments",
           "plain_launches", "begin_program", "start_program", "wait_for_producers"]

# Values of the kernels' ``PDL`` compile-time argument: no instruction, wait first, prefetch then wait,
# signal only (an ordinary launch whose successor may be a PDL launch).
PDL_OFF, PDL_WAIT, PDL_PREFETCH, PDL_SIGNAL = 0, 1, 2, 3
#: The ``chain`` mode of ``GRAPHPRESS_PDL`` (not a kernel value): see the module docstring.
PDL_CHAIN = -1
_MODES = {"off": PDL_OFF, "0": PDL_OFF, "wait": PDL_WAIT, "prefetch": PDL_PREFETCH, "1": PDL_PREFETCH,
          "chain": PDL_CHAIN}
_plain_depth = 0


def _requested() -> int:
    value = os.environ.get("GRAPHPRESS_PDL", "chain").strip().lower()
    if value not in _MODES:
        raise ValueError(f"GRAPHPRESS_PDL={value!r}: expected one of chain, off, wait, prefetch")
    return _MODES[value]


def pdl_mode(device: torch.device) -> int:
    """The PDL mode for launches on ``device``: ``GRAPHPRESS_PDL`` (:data:`PDL_CHAIN` unless set) where the
    GPU (compute capability 9 or later) and Triton support it, else :data:`PDL_OFF` (CPU, interpreter,
    older GPUs, inside :func:`plain_launches`)."""
    if device.type != "cuda" or gdc_wait is None or _plain_depth or os.environ.get("TRITON_INTERPRET", "0") == "1":
        return PDL_OFF
    return _requested() if gpu_facts(device).major >= 9 else PDL_OFF


def launch_arguments(device: torch.device, follows_product: bool = False) -> dict:
    """Keyword arguments of a batch-1 kernel launch on ``device``: the ``PDL`` value and, where the launch
    is a programmatic dependent, ``launch_pdl=True``.  ``follows_product``: the input is written by the
    graphpress product launched just before this one (what mode ``chain`` launches as a dependent)."""
    mode = pdl_mode(device)
    if mode == PDL_OFF:
        return {}
    if mode == PDL_CHAIN:
        return dict(PDL=PDL_PREFETCH, launch_pdl=True) if follows_product else dict(PDL=PDL_SIGNAL)
    return dict(PDL=mode, launch_pdl=True)


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
    """A PDL-aware kernel's first statement: signal the dependents (every mode but 0), and in mode ``wait``
    (1) also wait for the producers; mode ``prefetch`` (2) waits later, after its first weight loads, and
    mode ``signal`` (3, an ordinary launch) never waits."""
    start_program(PDL)
    if PDL == 1:
        wait_for_producers(PDL)
