"""Every Triton kernel compiles for Hopper (sm_90) on this machine, inline PTX included, without a GPU.

The interpreter tests run an emulation of the inline assembly, so a broken ``asm`` block (a misnamed
operand, a wrong constraint) would only show on a GPU.  ``triton.compile`` with an explicit target runs
the whole pipeline down to ``ptxas`` offline (in a subprocess: the suite runs under ``TRITON_INTERPRET=1``).
The swapped-operand kernel is also checked for the property it exists for: the decoded weight tile
reaches ``wgmma`` from registers, never through shared memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
try:
    import triton.backends.nvidia.compiler  # noqa: F401
except ImportError:  # pragma: no cover - a Triton build without the CUDA backend
    pytest.skip("this Triton has no CUDA backend to compile with", allow_module_level=True)


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = os.path.join(os.path.dirname(__file__), "offline_compile.py")
    done = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {report["name"]: report for report in lines}


def test_every_kernel_compiles_for_sm90(reports):
    assert len([name for name in reports if not name.startswith("gluon")]) == 16
    failed = {name: r["error"] for name, r in reports.items() if not r["ok"]}
    assert not failed, failed


def test_swapped_kernel_feeds_the_weights_to_wgmma_from_registers(reports):
    swapped = [r for name, r in reports.items() if name.startswith("swap_ab") and r["ok"]]
    assert len(swapped) == 4
    for report in swapped:
        assert report["wgmma"], report["name"]
        assert not report["weight_tile_in_shared"], (report["name"], report["weight_tile_in_shared"])


def test_swapped_kernel_prefetches_its_activations(reports):
    """Triton leaves the permuted activation load synchronous; the kernel loads its 32-bit pairs an iteration ahead."""
    for name, report in reports.items():
        if name.startswith("swap_ab"):
            assert report["activation_tile_carried"], name


def test_the_deep_batch1_launch_keeps_two_programs_per_multiprocessor(reports):
    """down's launch (16 warps, 16 x 2048 tile, partial last tile) must stay within 64 registers per thread: one
    more and a multiprocessor holds one program instead of two (KERNEL_NOTES run 44: 69 registers, 12.7 -> 16.5 us)."""
    registers = reports["gemv_int4 deep"]["registers"]
    if registers is None:
        pytest.skip("this Triton ships no cuobjdump to count registers with")
    assert registers <= 64


def test_gluon_kernel_overlaps_decode_and_wgmma(reports):
    """gluon_swap.py exists for one property: each wgmma is waited for only after the next tile is decoded,
    and ptxas keeps it so (it serialises the chain when the accumulator is touched inside the pipeline stage,
    which the zero-trip path of an unannotated loop does).  Also: the decoded tile is never converted."""
    gluon = [r for name, r in reports.items() if name.startswith("gluon")]
    if not gluon:
        pytest.skip("this Triton has no Gluon with layout inference")
    for report in gluon:
        assert report["ok"], report.get("error")
        assert report["wgmma"] and report["waits_for_the_previous"], report["name"]
        assert report["layout_conversions"] == 0, report["name"]
        assert report["serialised"] in (False, None), report["name"]


def test_inline_assembly_reaches_the_ptx(reports):
    assert reports["gemv_int4 pdl=0"]["lop3"] and reports["dot pairs=True"]["lop3"]
    assert reports["gemv_pairs int8"]["prmt"]


def test_batch1_kernels_wait_for_the_previous_kernel_only_where_asked(reports):
    """PDL mode 2 issues the first weight loads before ``griddepcontrol.wait`` (the point of it), mode 1 none;
    both signal ``launch_dependents`` before any load; mode 3 (an ordinary launch in a chain) only signals;
    mode 0 has no grid-dependency instruction at all."""
    assert reports["gemv_int4 pdl=0"]["pdl"] == {"wait": False, "signals": False}
    assert reports["gemv int8 pdl=0"]["pdl"] == {"wait": False, "signals": False}
    assert reports["gemv_int4 pdl=3"]["pdl"] == {"wait": False, "signals": True}
    waiting_first = reports["gemv_int4 pdl=1"]["pdl"]
    assert waiting_first["wait"] and waiting_first["loads_before_wait"] == 0 and waiting_first["launch_first"]
    for name in ("gemv_int4 pdl=2", "gemv int8 pdl=2"):
        prefetching = reports[name]["pdl"]
        assert prefetching["wait"] and prefetching["loads_before_wait"] > 0 and prefetching["launch_first"], name
