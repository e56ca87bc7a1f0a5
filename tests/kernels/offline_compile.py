"""Compile graphpress's Triton kernels for Hopper (sm_90) without a GPU; print one JSON line per kernel.

Run as a script, in a process without ``TRITON_INTERPRET=1`` (under the interpreter ``triton.jit`` makes
interpreted functions that cannot be compiled).  ``test_kernels_compile.py`` drives it.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from graphpress.backends.triton import gluon_swap  # noqa: E402
from graphpress.backends.triton.gemv_pairs import gemv_pairs_kernel  # noqa: E402
from graphpress.backends.triton.kernels import dot_kernel, gemv_kernel  # noqa: E402
from graphpress.backends.triton.swap_ab import swap_ab_kernel  # noqa: E402

_POINTERS = {"x_ptr": "*bf16", "w_ptr": "*i32", "m_ptr": "*i32", "out_ptr": "*bf16", "part_ptr": "*fp32",
             "count_ptr": "*i32", "s_ptr": "*fp16", "o_ptr": "*fp16"}


def _compile(kernel, constants: dict, warps: int = 4, stages: int = 3):
    parameters = inspect.signature(kernel.fn).parameters
    # Compile-time parameters left at their defaults must be given as constants too: Triton 3.6 would take
    # an unlisted one for a run-time integer (3.9 fills the defaults in itself).
    constants = {**{name: p.default for name, p in parameters.items()
                    if p.default is not inspect.Parameter.empty and "constexpr" in str(p.annotation)}, **constants}
    names = list(parameters)
    signature = {name: "constexpr" if name in constants else _POINTERS.get(name, "i32") for name in names}
    # Sizes and pointers divisible by 16, as Triton specialises them at run time on real shapes.
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(names)
             if name not in constants and name not in ("M", "k_per_split")}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))


def _bundled_tool(tool: str, file_name: str, content: str | bytes, *args: str) -> str | None:
    """The output of a CUDA tool Triton ships (``cuobjdump``, ``ptxas``) run on ``content`` written to
    ``file_name`` in a scratch folder (``{folder}`` in ``args`` names that folder), or None without the tool."""
    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / tool
    if not path.exists():
        return None
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / file_name
        source.write_bytes(content) if isinstance(content, bytes) else source.write_text(content)
        done = subprocess.run([str(path), *(a.format(folder=folder) for a in args), str(source)],
                              capture_output=True, text=True)
    return done.stdout + done.stderr


def _registers(cubin: bytes) -> int | None:
    """Registers per thread of a compiled kernel, read with the ``cuobjdump`` Triton ships (None without it)."""
    out = _bundled_tool("cuobjdump", "kernel.cubin", cubin, "-res-usage")
    found = re.search(r"REG:(\d+)", out or "")
    return int(found.group(1)) if found else None


def _report(name: str, kernel, constants: dict, stages: int = 3, weight_tile: str | None = None,
            activation_tile: str | None = None, warps: int = 4) -> dict:
    try:
        compiled = _compile(kernel, constants, warps=warps, stages=stages)
    except Exception as err:  # noqa: BLE001 - reported to the test, which names the kernel
        return {"name": name, "ok": False, "error": str(err)[-1500:]}
    ptx, ttgir = compiled.asm["ptx"], compiled.asm["ttgir"]
    stored = [line.strip() for line in ttgir.splitlines()
              if weight_tile and re.search(r"ttg\.local_alloc %\S+ :", line) and weight_tile in line]
    loops = [line for line in ttgir.splitlines() if "scf.for" in line]
    return {"name": name, "ok": True, "wgmma": "wgmma.mma_async" in ptx, "lop3": "lop3.b32" in ptx, "prmt": "prmt.b32" in ptx,
            "weight_tile_in_shared": stored, "pdl": _pdl_order(ptx), "registers": _registers(compiled.asm["cubin"]),
            # A register tile carried from one iteration to the next is one loaded an iteration ahead.
            "activation_tile_carried": bool(activation_tile) and any(activation_tile in line for line in loops)}


def _ptxas_notes(ptx: str) -> str | None:
    """What the ``ptxas`` Triton ships says about a PTX module for sm_90a (``-v``), or None without it."""
    return _bundled_tool("ptxas", "kernel.ptx", ptx, "-arch=sm_90a", "-v", "-o", "{folder}/k.cubin")


def _gluon_report(name: str, constants: dict, warps: int) -> dict:
    """Compile ``gluon_swap_kernel`` for sm_90: its wgmma must stay asynchronous (``wait_group 1``, and no
    serialisation note from ``ptxas``) and its weight tile must reach the fragment without a layout conversion."""
    from triton.experimental.gluon._runtime import GluonASTSource

    names = list(inspect.signature(gluon_swap.gluon_swap_kernel.fn).parameters)
    signature = {n: "constexpr" if n in constants else _POINTERS.get(n, "i32") for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n not in constants and n != "M"}
    try:
        compiled = triton.compile(GluonASTSource(fn=gluon_swap.gluon_swap_kernel, signature=signature,
                                                 constexprs=constants, attrs=attrs),
                                  target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))
    except Exception as err:  # noqa: BLE001 - reported to the test, which names the kernel
        return {"name": name, "ok": False, "error": str(err)[-1500:]}
    ptx = compiled.asm["ptx"]
    notes = _ptxas_notes(ptx)
    return {"name": name, "ok": True, "wgmma": "wgmma.mma_async" in ptx,
            "waits_for_the_previous": "wgmma.wait_group.sync.aligned 1;" in ptx,
            "serialised": None if notes is None else ("C7514" in notes or "C7515" in notes or "serialized" in notes),
            "layout_conversions": compiled.asm["ttgir"].count("ttg.convert_layout"),
            "registers": _registers(compiled.asm["cubin"])}


def _pdl_order(ptx: str) -> dict:
    """Where the grid-dependency instructions sit: how many global loads come before the wait (the
    prefetched weights), and whether ``launch_dependents`` precedes every load."""
    lines = [line.strip() for line in ptx.splitlines()]
    loads = [i for i, line in enumerate(lines) if line.startswith(("ld.global", "@%p")) and "ld.global" in line]
    waits = [i for i, line in enumerate(lines) if line.startswith("griddepcontrol.wait")]
    launches = [i for i, line in enumerate(lines) if line.startswith("griddepcontrol.launch_dependents")]
    if not waits:
        return {"wait": False, "signals": bool(launches)}
    return {"wait": True, "loads_before_wait": sum(i < waits[0] for i in loads),
            "launch_first": bool(launches) and all(launches[0] < i for i in loads)}


def main() -> None:
    reports = []
    for bf16 in (False, True):
        for block_m, block_n, block_k in ((16, 128, 64), (64, 128, 128)):
            reports.append(_report(
                f"swap_ab m{block_m} n{block_n} k{block_k} bf16={bf16}", swap_ab_kernel,
                dict(GROUP=128, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, EVEN_K=True, USE_ASM=True,
                     DOT_IN_FLOAT32=False, BF16=bf16, SPLIT_K=4),
                weight_tile=f"tensor<{block_n}x{block_k}x{'bf16' if bf16 else 'f16'}",
                activation_tile=f"tensor<{block_m}x{block_k // 2}xi32"))
    for pdl in (0, 1, 2, 3):
        reports.append(_report(f"gemv_int4 pdl={pdl}", gemv_pairs_kernel, dict(
            GROUP=128, BLOCK_N=64, WORDS=16, X_IS_BF16=True, USE_ASM=True, EVEN_K=True, EVEN_N=True, PDL=pdl,
            SPLIT_K=16),
            stages=1))
    for pairs in (False, True):
        reports.append(_report(f"dot pairs={pairs}", dot_kernel, dict(
            BITS=4, CODES_PER_WORD=8, TILE_IN_ONE_GROUP=True, BLOCK_M=16, BLOCK_N=128, BLOCK_K=64, USE_PARTIALS=True,
            DOT_PRECISION="tf32", DOT_IN_FLOAT32=False, UNPACK_BY_WORDS=True, PAIRS=pairs, USE_ASM=True)))
    for glu in (1, 2):
        reports.append(_report(f"gemv_int4 glu={glu}", gemv_pairs_kernel, dict(
            GROUP=128, BLOCK_N=256, WORDS=16, X_IS_BF16=True, USE_ASM=True, EVEN_K=True, EVEN_N=True, SPLIT_K=6,
            GLU=glu), stages=1))
    reports.append(_report("gemv_int4 deep", gemv_pairs_kernel, dict(
        GROUP=128, BLOCK_N=16, WORDS=256, X_IS_BF16=True, USE_ASM=True, EVEN_K=False, EVEN_N=True, SPLIT_K=1),
        stages=1, warps=16))
    reports.append(_report("gemv_pairs int8", gemv_pairs_kernel, dict(
        GROUP=4096, BLOCK_N=256, WORDS=16, X_IS_BF16=True, USE_ASM=True, EVEN_K=True, EVEN_N=True, SPLIT_K=4, BITS=8),
        stages=1))
    for pdl in (0, 2):
        reports.append(_report(f"gemv int8 pdl={pdl}", gemv_kernel, dict(
            BITS=8, CODES_PER_WORD=4, TILE_IN_ONE_GROUP=True, BLOCK_N=128, BLOCK_K=64, PDL=pdl, SPLIT_K=8), stages=2))
    if gluon_swap.AVAILABLE:
        for block_m, block_n, block_k, splits, warps, parts in ((16, 64, 64, 8, 4, 1), (16, 128, 64, 2, 8, 1),
                                                                (64, 128, 64, 2, 8, 1), (16, 64, 64, 1, 4, 2),
                                                                (16, 64, 128, 2, 4, 2)):
            reports.append(_gluon_report(f"gluon_swap m{block_m} n{block_n} k{block_k} parts={parts}", dict(
                BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP=128, SPLIT_K=splits, WARPS=warps, STAGES=3,
                IN_FLIGHT=min(splits, 2), PARTS=parts), warps))
    for report in reports:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
