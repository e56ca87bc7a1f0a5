"""Benchmark of graphpress's Triton weight-only kernels on one GPU, in one run (issues 6 and 7).

Sections (``--sections``, default all):

* ``kernels``: device copy bandwidth; then on the Llama-2-7B linear shapes, at M = 1, 16, 128:
  bf16 ``F.linear``, torch's tinygemm int4 (``aten._weight_int4pack_mm``), graphpress int4 g128 and
  graphpress int8 per-channel.  Time (median per call of a CUDA-graph replay over operand copies that
  defeat L2, see ``timing.py``), effective weight bandwidth (bytes of weights and their metadata over
  time), ratios, and the relative error of every kernel against a float32 product with its own dequantized
  weights; then, at M = 1, each product against the read floor of its bytes (``read_floor.py``) and 1.7x
  tinygemm's time.  Also the autotune time and the first-call time of a second process that reads the
  on-disk autotune cache.
* ``pdl``: the batch-1 int4 and int8 products with programmatic dependent launch off, waiting first, and
  prefetching their first weight tile before the wait (``GRAPHPRESS_PDL``), side by side.
* ``sparse``: 2:4 semi-structured sparse (``to_sparse_semi_structured``) vs dense bf16 at M = 1, 128, 2048.
* ``e2e``: a Llama-2-7B-shaped ``LlamaForCausalLM`` with random bf16 weights built on the GPU, decoding
  128 tokens at batch 1 with a static cache and ``torch.compile(mode="reduce-overhead")``: bf16, then
  every linear RTN-quantized to int4 g128 and lowered to ``TritonQuantLinear``: one for one, with q/k/v and
  gate/up fused, and with q/k/v fused and each MLP a ``GatedMLP`` (SiLU in the gate-up kernel's epilogue),
  the last with PDL off and in its default ``chain`` mode (the down product a dependent of the gate-up one).
  ``--e2e-variants`` picks a subset.

Run from the repository root: ``python3 benchmarks/bench_kernels.py`` (tables also go to ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402
import triton.testing  # noqa: E402
from read_floor import read_floor_us  # noqa: E402

from graphpress.backends.triton import TritonQuantLinear, lower_linear_modules, rtn_quantize, tune  # noqa: E402
from graphpress.backends.triton.layout import dequantize_kernel_weights  # noqa: E402
from graphpress.backends.triton.ops import chosen_config  # noqa: E402
from graphpress.backends.triton.timing import copies_to_defeat_l2, graph_time_us  # noqa: E402

# (name, out_features N, in_features K) of Llama-2-7B's linears (qkv and gate_up fused).
SHAPES = (("qkv", 12288, 4096), ("o", 4096, 4096), ("gate_up", 22016, 4096), ("down", 4096, 11008))
ROWS = (1, 16, 128)
SPARSE_ROWS = (1, 128, 2048)
TINYGEMM_INNER_K_TILES = 8

_lines: list[str] = []


def emit(line: str = "") -> None:
    """Print a line now (the device reply carries the tail) and keep it for the results file."""
    print(line, flush=True)
    _lines.append(line)


def timed_us(make_call, operand_bytes: int) -> float:
    """Microseconds per call, CUDA-graph replay over enough operand copies to miss in L2 (see timing.py).

    ``make_call(i)`` returns the call on copy ``i`` (copy 0 is the original operands)."""
    return graph_time_us([make_call(i) for i in range(copies_to_defeat_l2(operand_bytes))])


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(got).all():
        return float("nan")
    return float((got.double() - ref.double()).norm() / ref.double().norm())


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB, counting bytes read plus bytes written."""
    src = torch.randn(256 * 1024 * 1024, device="cuda")
    dst = torch.empty_like(src)
    us = graph_time_us([lambda: dst.copy_(src)] * 5)
    return 2 * src.numel() * 4 / (us * 1e-6) / 1e9


def tinygemm_pack(weight: torch.Tensor, group: int):
    """torch's own recipe (common_quantization._group_quantize_tensor) for _weight_int4pack_mm."""
    n, k = weight.shape
    w = weight.float().reshape(-1, group)
    lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    scales = (hi - lo).clamp(min=1e-6) / 15
    zeros = lo + scales * 8
    codes = w.sub(lo).div(scales).round().clamp_(0, 15).to(torch.int32).reshape(n, k)
    packed_u8 = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)
    packed = torch.ops.aten._convert_weight_to_int4pack(packed_u8, TINYGEMM_INNER_K_TILES)
    scales_zeros = torch.cat([scales.reshape(n, -1, 1), zeros.reshape(n, -1, 1)], 2).transpose(0, 1).contiguous()
    scales_zeros = scales_zeros.to(torch.bfloat16)
    # Its dequantization: (q - 8) * scale + zero, with the bf16-rounded scale and zero.
    sz = scales_zeros.float().transpose(0, 1)  # [n, k/group, 2]
    dense = (codes.reshape(n, -1, group).float() - 8) * sz[..., :1] + sz[..., 1:]
    return packed, scales_zeros, dense.reshape(n, k)


class Rotation:
    """Copies of one shape's operands (made on first use, copy 0 is the original) for L2-cold timing."""

    def __init__(self, weight, int4, int8, tg_packed, tg_scales_zeros) -> None:
        self._originals = {"bf16": weight, "int4": int4, "int8": int8, "tg": (tg_packed, tg_scales_zeros)}
        self._copies: dict[tuple[str, int], object] = {}

    def _get(self, kind: str, i: int):
        if i == 0:
            return self._originals[kind]
        if (kind, i) not in self._copies:
            original = self._originals[kind]
            if isinstance(original, tuple):
                self._copies[kind, i] = tuple(t.clone() for t in original)
            elif isinstance(original, torch.Tensor):
                self._copies[kind, i] = original.clone()
            else:
                self._copies[kind, i] = copy.deepcopy(original)
        return self._copies[kind, i]

    def bf16(self, i: int) -> torch.Tensor:
        return self._get("bf16", i)

    def int4(self, i: int) -> TritonQuantLinear:
        return self._get("int4", i)

    def int8(self, i: int) -> TritonQuantLinear:
        return self._get("int8", i)

    def tinygemm_call(self, x: torch.Tensor, i: int):
        packed, scales_zeros = self._get("tg", i)
        return lambda: torch.ops.aten._weight_int4pack_mm(x, packed, 128, scales_zeros)


def weight_bytes(module: TritonQuantLinear) -> int:
    return sum(t.numel() * t.element_size() for t in (module.packed, module.scales, module.offsets))


def shape_operands(n: int, k: int) -> tuple:
    """One shape's operands, the same in every section: random bf16 weight (seed 0), graphpress int4 g128 and
    int8 per-channel layers, tinygemm's packing, and the float32 weights each kernel should reproduce."""
    torch.manual_seed(0)
    weight = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    int4 = TritonQuantLinear.from_quantized(rtn_quantize(weight, 4, 128))
    int8 = TritonQuantLinear.from_quantized(rtn_quantize(weight, 8, None))
    tg_packed, tg_scales_zeros, tg_dense = tinygemm_pack(weight, 128)
    dense4 = dequantize_kernel_weights(int4.kernel_weights())  # [K, N] float32
    dense8 = dequantize_kernel_weights(int8.kernel_weights())
    return weight, int4, int8, tg_packed, tg_scales_zeros, tg_dense, dense4, dense8


def kernels_section(results: dict) -> None:
    bandwidth = copy_bandwidth_gbs()
    results["copy_gbs"] = bandwidth
    emit(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}")
    emit(f"device copy bandwidth: {bandwidth:.0f} GB/s (read + write)")
    emit("")
    emit("| shape | M | bf16 us | tinygemm int4 us | gp int4 us | gp int8 us | gp int4 GB/s (% copy) | "
         "gp int8 GB/s | int4 vs bf16 | int4 vs tinygemm | int8 vs bf16 | rel err bf16 / tg / gp4 / gp8 |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, n, k in SHAPES:
        weight, int4, int8, tg_packed, tg_scales_zeros, tg_dense, dense4, dense8 = shape_operands(n, k)
        started = time.perf_counter()
        tune(int4, ROWS)
        tune(int8, ROWS)
        tune_s = time.perf_counter() - started
        copies = Rotation(weight, int4, int8, tg_packed, tg_scales_zeros)
        for m in ROWS:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            runs = {
                "bf16": (lambda i, x=x, c=copies: lambda: F.linear(x, c.bf16(i)), weight.float().t(),
                         weight.numel() * 2),
                "tg": (lambda i, x=x, c=copies: c.tinygemm_call(x, i), tg_dense.t(),
                       tg_packed.numel() * 4 + tg_scales_zeros.numel() * 2),
                "gp4": (lambda i, x=x, c=copies: lambda: c.int4(i)(x), dense4, weight_bytes(int4)),
                "gp8": (lambda i, x=x, c=copies: lambda: c.int8(i)(x), dense8, weight_bytes(int8)),
            }
            times, errors = {}, {}
            for key, (make_call, dense_t, nbytes) in runs.items():
                errors[key] = relative_error(make_call(0)(), x.float() @ dense_t)
                times[key] = timed_us(make_call, nbytes)
            bw4 = weight_bytes(int4) / (times["gp4"] * 1e-6) / 1e9
            bw8 = weight_bytes(int8) / (times["gp8"] * 1e-6) / 1e9
            row = dict(shape=name, m=m, us=times, err=errors, gp4_gbs=bw4, gp8_gbs=bw8,
                       gp4_config=str(chosen_config(x, int4.kernel_weights())), tune_s=tune_s,
                       gp4_bytes=weight_bytes(int4), gp8_bytes=weight_bytes(int8))
            rows.append(row)
            emit(f"| {name} {n}x{k} | {m} | {times['bf16']:.1f} | {times['tg']:.1f} | {times['gp4']:.1f} | "
                 f"{times['gp8']:.1f} | {bw4:.0f} ({100 * bw4 / bandwidth:.0f}%) | {bw8:.0f} | "
                 f"{times['bf16'] / times['gp4']:.2f}x | {times['tg'] / times['gp4']:.2f}x | "
                 f"{times['bf16'] / times['gp8']:.2f}x | {errors['bf16']:.1e} / {errors['tg']:.1e} / "
                 f"{errors['gp4']:.1e} / {errors['gp8']:.1e} |")
        emit(f"|   autotune {name}: {tune_s:.1f} s for int4+int8 at M={ROWS} |||||||||||")
        del weight, int4, int8, tg_packed, tg_dense, dense4, dense8, copies
        torch.cuda.empty_cache()
    results["kernels"] = rows
    emit("")
    floors_table([row for row in rows if row["m"] == 1], results)
    emit("")
    for row in rows:
        emit(f"chosen int4 launch {row['shape']} M={row['m']}: {row['gp4_config']}")
    emit("")
    emit(second_process_first_call())


def floors_table(batch1_rows: list[dict], results: dict) -> None:
    """Batch-1 times against the read floor (``read_floor.py``) of the same bytes, measured in this run: how far
    each product is from reading its weights and nothing else, and whether 1.7x tinygemm lies above the floor."""
    emit("| shape | int4 MB | int4 read floor us (GB/s) | gp int4 us | gp int4 / floor | tinygemm / 1.7 us | "
         "int8 MB | int8 read floor us | gp int8 us | gp int8 / floor |")
    emit("|---|---|---|---|---|---|---|---|---|---|")
    floors = []
    for row in batch1_rows:
        floor4, launch4 = read_floor_us(row["gp4_bytes"])
        floor8, _ = read_floor_us(row["gp8_bytes"])
        us = row["us"]
        floors.append(dict(shape=row["shape"], int4_floor_us=floor4, int8_floor_us=floor8, launch=launch4))
        emit(f"| {row['shape']} | {row['gp4_bytes'] / 1e6:.1f} | {floor4:.1f} ({row['gp4_bytes'] / floor4 / 1e3:.0f}) | "
             f"{us['gp4']:.1f} | {us['gp4'] / floor4:.2f} | {us['tg'] / 1.7:.1f} | {row['gp8_bytes'] / 1e6:.1f} | "
             f"{floor8:.1f} | {us['gp8']:.1f} | {us['gp8'] / floor8:.2f} |")
    results["read_floors"] = floors


PDL_MODES = ("off", "chain", "wait", "prefetch")


def pdl_section(results: dict) -> None:
    """Batch-1 products with programmatic dependent launch off / waiting first / prefetching the first weight
    tile (graphpress/backends/triton/pdl.py), side by side with bf16 and tinygemm, one launch config each."""
    emit("")
    emit("| shape | M=1 bf16 us | tinygemm us | gp int4 off / chain / wait / prefetch us | gp int8 off / chain / wait / prefetch us | "
         "int4 prefetch vs tinygemm | int4 prefetch % copy | int8 prefetch vs bf16 | max rel err int4 / int8 |")
    emit("|---|---|---|---|---|---|---|---|---|")
    bandwidth = results.get("copy_gbs") or copy_bandwidth_gbs()
    rows = []
    for name, n, k in SHAPES:
        weight, int4, int8, tg_packed, tg_scales_zeros, _, dense4, dense8 = shape_operands(n, k)
        tune(int4, (1,))
        tune(int8, (1,))
        copies = Rotation(weight, int4, int8, tg_packed, tg_scales_zeros)
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        bf16 = timed_us(lambda i, x=x, c=copies: lambda: F.linear(x, c.bf16(i)), weight.numel() * 2)
        tg = timed_us(lambda i, x=x, c=copies: c.tinygemm_call(x, i),
                      tg_packed.numel() * 4 + tg_scales_zeros.numel() * 2)
        times: dict[str, dict[str, float]] = {"gp4": {}, "gp8": {}}
        errors = {"gp4": 0.0, "gp8": 0.0}
        previous = os.environ.get("GRAPHPRESS_PDL")
        try:
            for mode in PDL_MODES:
                os.environ["GRAPHPRESS_PDL"] = mode
                for key, module_of, dense, nbytes in (("gp4", copies.int4, dense4, weight_bytes(int4)),
                                                      ("gp8", copies.int8, dense8, weight_bytes(int8))):
                    errors[key] = max(errors[key], relative_error(module_of(0)(x), x.float() @ dense))
                    times[key][mode] = timed_us(lambda i, module_of=module_of, x=x: lambda: module_of(i)(x), nbytes)
        finally:
            if previous is None:
                os.environ.pop("GRAPHPRESS_PDL", None)
            else:
                os.environ["GRAPHPRESS_PDL"] = previous
        gbs = weight_bytes(int4) / (times["gp4"]["prefetch"] * 1e-6) / 1e9
        rows.append(dict(shape=name, bf16=bf16, tinygemm=tg, **times, err=errors))
        int4_us = " / ".join(f"{times['gp4'][m]:.1f}" for m in PDL_MODES)
        int8_us = " / ".join(f"{times['gp8'][m]:.1f}" for m in PDL_MODES)
        emit(f"| {name} {n}x{k} | {bf16:.1f} | {tg:.1f} | {int4_us} | {int8_us} | {tg / times['gp4']['prefetch']:.2f}x | "
             f"{100 * gbs / bandwidth:.0f}% | {bf16 / times['gp8']['prefetch']:.2f}x | "
             f"{errors['gp4']:.1e} / {errors['gp8']:.1e} |")
        del weight, int4, int8, tg_packed, dense4, dense8, copies
        torch.cuda.empty_cache()
    results["pdl"] = rows


def second_process_first_call() -> str:
    """A fresh process builds the qkv int4 layer and times its first M=1 call (cache hit: no tuning)."""
    code = (
        "import sys, time, logging, torch; sys.path.insert(0, %r)\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from graphpress.backends.triton import TritonQuantLinear, rtn_quantize\n"
        "w = torch.randn(12288, 4096, device='cuda', dtype=torch.bfloat16) * 0.02\n"
        "layer = TritonQuantLinear.from_quantized(rtn_quantize(w, 4, 128))\n"
        "x = torch.randn(1, 4096, device='cuda', dtype=torch.bfloat16)\n"
        "t = time.perf_counter(); layer(x); torch.cuda.synchronize(); first = time.perf_counter() - t\n"
        "t = time.perf_counter(); layer(x); torch.cuda.synchronize(); second = time.perf_counter() - t\n"
        "print(f'{first:.3f} {second:.4f}')\n" % str(REPO_ROOT)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode:
        return f"second process failed: {out.stderr[-800:]}"
    if "tuned" in out.stderr:
        return f"second process RETUNED (cache miss): {out.stderr[-600:]}"
    first, second = out.stdout.split()[-2:]
    return (f"second process, qkv int4 M=1 with the on-disk autotune cache: first call {float(first) * 1e3:.0f} ms "
            f"(Triton compile/load, no tuning), second call {float(second) * 1e3:.2f} ms")


def prune_2_4(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude weights of every 4 consecutive inputs."""
    groups = weight.reshape(-1, 4)
    keep = groups.abs().topk(2, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    return (groups * mask).reshape(weight.shape)


def sparse_section(results: dict) -> None:
    from torch.sparse import to_sparse_semi_structured

    emit("")
    emit("| shape | M | dense bf16 us | 2:4 sparse us | speedup | rel err |")
    emit("|---|---|---|---|---|---|")
    rows = []
    for name, n, k in SHAPES:
        torch.manual_seed(1)
        weight = prune_2_4(torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02)
        try:
            sparse = to_sparse_semi_structured(weight)
        except Exception as err:  # noqa: BLE001 - report, do not abort the run
            emit(f"| {name} | - | - | to_sparse_semi_structured failed: {type(err).__name__}: {err} | | |")
            continue
        for m in SPARSE_ROWS:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            dense_copies = [weight] + [weight.clone() for _ in range(copies_to_defeat_l2(weight.numel() * 2) - 1)]
            dense_us = timed_us(lambda i, x=x, d=dense_copies: lambda: F.linear(x, d[i]), weight.numel() * 2)
            try:
                err = relative_error(F.linear(x, sparse), x.float() @ weight.float().t())
                sparse_copies = [sparse] + [to_sparse_semi_structured(c) for c in dense_copies[1:]]
                sparse_us = graph_time_us([lambda s=s, x=x: F.linear(x, s) for s in sparse_copies])
            except Exception as exc:  # noqa: BLE001
                emit(f"| {name} {n}x{k} | {m} | {dense_us:.1f} | failed: {type(exc).__name__}: {str(exc)[:120]} | | |")
                continue
            rows.append(dict(shape=name, m=m, dense_us=dense_us, sparse_us=sparse_us, err=err))
            emit(f"| {name} {n}x{k} | {m} | {dense_us:.1f} | {sparse_us:.1f} | {dense_us / sparse_us:.2f}x | {err:.1e} |")
    results["sparse"] = rows


def llama_7b_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, tie_word_embeddings=False)


def decode_tokens_per_s(model, prompt: torch.Tensor, new_tokens: int, label: str) -> tuple[float, torch.Tensor]:
    """Greedy decoding with a static cache; the decode step is compiled with CUDA graphs. Second run timed."""
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=prompt.shape[1] + new_tokens)

    def step(token, position):
        out = model(input_ids=token, position_ids=position.unsqueeze(0), cache_position=position,
                    past_key_values=cache, use_cache=True)
        return out.logits[:, -1]

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)

    def generate() -> tuple[float, torch.Tensor]:
        cache.reset()
        p = prompt.shape[1]
        with torch.no_grad():
            logits = model(input_ids=prompt, cache_position=torch.arange(p, device="cuda"), past_key_values=cache,
                           use_cache=True).logits[:, -1]
            token = logits.argmax(-1, keepdim=True)
            tokens = [token]
            # Positions live on the GPU from the start: building each from a Python list is a pageable
            # host-to-device copy that makes the host wait for the previous token, so CPU overhead and GPU
            # time would add up instead of overlapping (int4 decode became CPU-bound on a slower host).
            positions = torch.arange(p, p + new_tokens, device="cuda")
            torch.cuda.synchronize()
            started = time.perf_counter()
            for i in range(new_tokens):
                token = compiled(token, positions[i:i + 1].clone()).argmax(-1, keepdim=True)
                tokens.append(token)
            torch.cuda.synchronize()
        return new_tokens / (time.perf_counter() - started), torch.cat(tokens, 1)

    started = time.perf_counter()
    generate()  # compiles and records the graphs
    emit(f"{label}: compile + first decode {time.perf_counter() - started:.0f} s")
    rates = [generate() for _ in range(2)]
    return max(r[0] for r in rates), rates[-1][1]


def _build_llama_7b():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(llama_7b_config()).eval()
    torch.set_default_dtype(default_dtype)
    return model


def _fuse_projections(model, gated_mlp: bool = False) -> int:
    """q/k/v of every layer as one int4 TritonQuantLinear; gate/up as one too (sibling fusion), or, with
    ``gated_mlp``, each MLP as a ``GatedMLP`` whose gate-up product applies SiLU in its epilogue."""
    from graphpress.backends.fused_linear import install_fused
    from graphpress.backends.gated_mlp import install_gated_mlps

    quantize = lambda linear: rtn_quantize(linear.weight.data, 4, 128)  # noqa: E731
    groups = [("self_attn", ("q_proj", "k_proj", "v_proj"), "fused_qkv")]
    if not gated_mlp:
        groups.append(("mlp", ("gate_proj", "up_proj"), "fused_gate_up"))
    for index in range(len(model.model.layers)):
        for owner, names, fused_name in groups:
            prefix = f"model.layers.{index}.{owner}"
            parts = [quantize(model.get_submodule(f"{prefix}.{name}")) for name in names]
            install_fused(model, [f"{prefix}.{name}" for name in names], TritonQuantLinear.from_quantized(parts),
                          f"{prefix}.{fused_name}", [p.out_features for p in parts])
    gated = install_gated_mlps(model, lambda g, u, act: TritonQuantLinear.gated_from_quantized(
        quantize(g), quantize(u), activation=act)) if gated_mlp else []
    return len(model.model.layers) * len(groups) + len(gated)


API_PIPELINE = 'fuse-qkv,fuse-gate-up,quantize{bits=4,group=128,ignore=""},lower-triton'
#: End-to-end variants: key -> (table label, fuse q/k/v (and gate/up unless gated), gated MLPs, GRAPHPRESS_PDL);
#: fuse None: built by ``graphpress.optimize`` with API_PIPELINE instead.
E2E_VARIANTS = {
    "one-for-one": ("graphpress int4 g128 (all linears incl. lm_head), one for one", False, False, "chain"),
    "fused": ("graphpress int4 g128, q/k/v and gate/up fused", True, False, "chain"),
    "gated-off": ("graphpress int4 g128, q/k/v fused, gated MLP, PDL off", True, True, "off"),
    "gated": ("graphpress int4 g128, q/k/v fused, gated MLP, down chained to gate-up (PDL `chain`, the default)",
              True, True, "chain"),
    # The user's route to the same model: the pass pipeline (fusion, quantization, lowering) through optimize.
    "api": (f"`graphpress.optimize(model, '{API_PIPELINE}')`", None, None, "chain"),
}


def _optimize_pipeline(model, prompt: torch.Tensor):
    """``graphpress.optimize`` with API_PIPELINE on the model itself (inplace: no second 13 GB copy); returns
    the model, the names of its Triton layers and the number of fused groups, as the manual route does."""
    import graphpress

    model, report = graphpress.optimize(model, API_PIPELINE, example_inputs=(prompt,),
                                        example_kwargs={"use_cache": False}, inplace=True, return_report=True)
    emit("api: " + "; ".join(f"{r.name} {r.stats}" for r in report.records))
    names = [n for n, m in model.named_modules() if isinstance(m, TritonQuantLinear)]
    fused = sum(r.stats.get("groups_fused", 0) for r in report.records)
    return model, names, fused


def e2e_section(results: dict, new_tokens: int, variants: list[str]) -> None:
    emit("")
    model = _build_llama_7b()
    probe = model.model.layers[0].mlp.down_proj.weight
    emit(f"Llama-2-7B-shaped model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, "
         f"dtype {probe.dtype}, weight std {probe.float().std():.4f} (random, non-zero)")
    prompt = torch.randint(0, 32000, (1, 16), device="cuda")
    bf16_rate, bf16_tokens = decode_tokens_per_s(model, prompt, new_tokens, "bf16")
    emit(f"bf16: {bf16_rate:.1f} tokens/s")
    rates, variant_tokens = {}, {}
    previous_pdl = os.environ.get("GRAPHPRESS_PDL")
    for key in variants:
        label, fuse, gated_mlp, pdl = E2E_VARIANTS[key]
        torch._dynamo.reset()
        os.environ["GRAPHPRESS_PDL"] = pdl
        del model  # same seed, same weights for every variant
        torch.cuda.empty_cache()
        model = _build_llama_7b()
        started = time.perf_counter()
        if fuse is None:
            model, names, fused = _optimize_pipeline(model, prompt)
        else:
            with torch.no_grad():
                fused = _fuse_projections(model, gated_mlp) if fuse else 0
                names = lower_linear_modules(model, quantizer=lambda lin: rtn_quantize(lin.weight.data, 4, 128))
        torch.cuda.empty_cache()
        quant_s = time.perf_counter() - started
        started = time.perf_counter()
        tuned = {}
        for module in model.modules():
            if isinstance(module, TritonQuantLinear) and tuple(module.packed.shape) not in tuned:
                tuned[tuple(module.packed.shape)] = tune(module, (1, prompt.shape[1]))
        tune_s = time.perf_counter() - started
        chained = sum(getattr(m, "follows_product", False) for m in model.modules())
        gib = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())) / 2**30
        emit(f"{key}: {len(names)} linears lowered one for one, {fused} fused groups (RTN g128) in {quant_s:.1f} s, "
             f"{chained} chained; autotune {tune_s:.1f} s for {len(tuned)} shapes; model now {gib:.2f} GiB; "
             f"GRAPHPRESS_PDL={pdl}")
        rate, tokens = decode_tokens_per_s(model, prompt, new_tokens, key)
        rates[key] = (rate, float((tokens == bf16_tokens).float().mean()))
        variant_tokens[key] = tokens
        emit(f"{key}: {rate:.1f} tokens/s")
    if previous_pdl is None:
        os.environ.pop("GRAPHPRESS_PDL", None)
    else:
        os.environ["GRAPHPRESS_PDL"] = previous_pdl
    emit("")
    emit("| model | tokens/s (batch 1, 128 new tokens, static cache, torch.compile reduce-overhead) | speedup | "
         "greedy tokens equal to bf16 |")
    emit("|---|---|---|---|")
    emit(f"| bf16 | {bf16_rate:.1f} | 1.00x | |")
    for key, (rate, agree) in rates.items():
        emit(f"| {E2E_VARIANTS[key][0]} | {rate:.1f} | {rate / bf16_rate:.2f}x | {100 * agree:.0f}% |")
    emit("(random weights: near-flat logits, so int4 and bf16 part ways at the first token; only a sanity signal)")
    if "gated-off" in variant_tokens and "gated" in variant_tokens:
        same = float((variant_tokens["gated"] == variant_tokens["gated-off"]).float().mean())
        emit(f"gated MLP with PDL `chain` against PDL off (same kernels, only launch timing differs): "
             f"{100 * same:.0f}% of greedy tokens identical")
    results["e2e"] = dict(bf16=bf16_rate, **{k: v[0] for k, v in rates.items()})


def main() -> None:
    global ROWS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="kernels,pdl,sparse,e2e")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rows", default=",".join(map(str, ROWS)), help="activation rows M of the kernels section")
    parser.add_argument("--e2e-variants", default=",".join(E2E_VARIANTS),
                        help=f"end-to-end variants, in order (of {', '.join(E2E_VARIANTS)})")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for bench_kernels.{md,json}")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_kernels.py needs a CUDA GPU")
    results: dict = {}
    ROWS = tuple(int(m) for m in args.rows.split(","))
    sections = {"kernels": kernels_section, "sparse": sparse_section, "pdl": pdl_section,
                "e2e": lambda r: e2e_section(r, args.new_tokens, args.e2e_variants.split(","))}
    for name in args.sections.split(","):
        try:
            sections[name](results)
        except Exception:  # noqa: BLE001 - one broken section must not lose the others' numbers
            emit(f"section {name} failed:\n{traceback.format_exc()}")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_kernels.md").write_text("\n".join(_lines) + "\n")
        (out / "bench_kernels.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
