"""Launching the kernels, and the torch custom op ``graphpress::quant_matmul`` that wraps them.

The op takes activations ``[..., K]`` and a weight in kernel layout and returns ``[..., N]``.  Being a
``torch.library.custom_op`` with a fake (meta) implementation, it is opaque to torch.compile (no graph
break, the kernel is called as is) and its launches can be captured in CUDA graphs.  Inside, M picks the
path (GEMV / small-batch split-K / GEMM), the autotune cache picks the launch configuration, and a
split-K launch writes float32 partials that one small kernel sums and casts.

Tuning is skipped (a default configuration is used, and said once in the log) while a CUDA graph is being
captured, because timing needs synchronisation; call :func:`tune` beforehand for the sizes you will run.
``GRAPHPRESS_AUTOTUNE=0`` skips it everywhere (configurations already in the cache are still used): for
quick checks of many small models, where compiling every candidate would take longer than the work.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Iterable, Optional

import torch

from graphpress.backends.triton import gluon_swap, kernels
from graphpress.backends.triton.autotune import AutotuneCache, m_bucket, pick_fastest, tuning_key
from graphpress.backends.triton.configs import (
    LaunchConfig,
    candidate_configs,
    default_config,
    kernel_path,
    pair_split,
    tile_fits_group,
)
from graphpress.backends.triton.gemv_pairs import gemv_pairs_kernel
from graphpress.backends.triton.gpu_facts import gpu_facts
from graphpress.backends.triton.layout import GATED_ACTIVATIONS, KernelWeights, gated_columns
from graphpress.backends.triton.pdl import launch_arguments, plain_launches
from graphpress.backends.triton.splitk import partials_in_flight
from graphpress.backends.triton.swap_ab import swap_ab_kernel
from graphpress.backends.triton.timing import copies_to_defeat_l2
from triton.runtime.errors import OutOfResources

__all__ = ["quant_matmul", "launch_quant_matmul", "chosen_config", "tune", "interpreting", "tuning_enabled", "fast_tuning",
           "paired_gemv_applies", "pairs_apply", "AUTOTUNE_CACHE"]

_log = logging.getLogger("graphpress")
_warned: set[str] = set()

#: The process-wide autotune cache (backed by ``$GRAPHPRESS_CACHE_DIR/triton_autotune.json``).
AUTOTUNE_CACHE = AutotuneCache()
_REDUCE_BLOCK = 1024


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU (``TRITON_INTERPRET=1``, used by the tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def tuning_enabled() -> bool:
    """False when ``GRAPHPRESS_AUTOTUNE`` is ``0``/``off``/``false``: untuned defaults instead of timing."""
    return os.environ.get("GRAPHPRESS_AUTOTUNE", "1").strip().lower() not in ("0", "off", "false", "no")


def fast_tuning() -> bool:
    """True when ``GRAPHPRESS_AUTOTUNE=fast``: the two-round search (``autotune.staged_search``), about half the
    tuning time, but on the H100 it missed the best launch on two of 24 shapes by 9-11% (KERNEL_NOTES run 38),
    so timing every candidate stays the default."""
    return os.environ.get("GRAPHPRESS_AUTOTUNE", "").strip().lower() == "fast"


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        _log.info("graphpress: %s", message)


# (device, bits, group, M bucket, N, Kp, dtype) -> config: the per-call lookup, no string building.
_config_memo: dict[tuple, LaunchConfig] = {}


# Per-device arrival counters of the paired GEMV's split-K (zero between launches: the last program of a
# column block resets its own). Sized once, before any graph capture, for up to this many column blocks.
_ARRIVAL_SLOTS = 1 << 16
_arrival_counters: dict[torch.device, torch.Tensor] = {}


def pairs_apply(x2d: torch.Tensor, w: KernelWeights) -> bool:
    """Whether the float16-pair decoding serves this product: int4 with ``meta_pairs``, 16-bit activations
    that can be read as 32-bit pairs (even K and row stride, 4-byte aligned: the swapped-operand kernel
    reads them so), groups of at least one 64-input tile (the batch-1 kernel adds its own conditions)."""
    return (w.bits == 4 and w.meta_pairs is not None and x2d.dtype in (torch.bfloat16, torch.float16)
            and w.group % 64 == 0 and _pair_readable(x2d))


def _pair_readable(x2d: torch.Tensor) -> bool:
    return x2d.shape[1] % 2 == 0 and x2d.stride(0) % 2 == 0 and x2d.stride(1) == 1 and x2d.data_ptr() % 4 == 0


def paired_gemv_applies(x2d: torch.Tensor, w: KernelWeights) -> bool:
    """Whether ``gemv_pairs.gemv_pairs_kernel`` can take this product (else the generic GEMV does): one row of
    16-bit activations, even K, int4 or int8 words with ``meta_pairs``, groups of at least 64 inputs."""
    return (x2d.shape[0] == 1 and w.meta_pairs is not None and w.packed.dtype == torch.int32
            and x2d.dtype in (torch.bfloat16, torch.float16) and w.group % 64 == 0 and _pair_readable(x2d))


def _k_split(padded_k: int, config: LaunchConfig) -> tuple[int, int]:
    """Inputs per K split (whole ``BLOCK_K`` tiles) and the number of splits that covers ``padded_k``."""
    per_split = -(-padded_k // (config.split_k * config.block_k)) * config.block_k
    return per_split, -(-padded_k // per_split)


def _counters(device: torch.device) -> torch.Tensor:
    counters = _arrival_counters.get(device)
    if counters is None:
        counters = _arrival_counters[device] = torch.zeros(_ARRIVAL_SLOTS, dtype=torch.int32, device=device)
    return counters


def _split_k_buffers(out: torch.Tensor, tiles: int, splits: int,
                     partial_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 partials (``out`` itself without a split) and the arrival counters of a launch that sums
    its K splits in place (``splitk.store_or_reduce``); refuses more output tiles than there are counters."""
    if tiles > _ARRIVAL_SLOTS:
        raise ValueError(f"{tiles} output tiles exceed the {_ARRIVAL_SLOTS} split-K arrival counters")
    partials = torch.empty(partial_shape, device=out.device, dtype=torch.float32) if splits > 1 else out
    return partials, _counters(out.device)


def _launch_paired(x2d: torch.Tensor, w: KernelWeights, config: LaunchConfig, out: torch.Tensor,
                   glu: int = 0, follows_product: bool = False, probe: int = 0) -> None:
    """One launch of the batch-1 kernel; ``probe``: its ``PROBE`` switches (``benchmarks/overhead_probe.py``)."""
    n, kp = w.out_features, w.padded_in_features
    per_split, splits = _k_split(kp, config)
    tiles_n = -(-n // config.block_n)
    partials, counters = _split_k_buffers(out, tiles_n, splits, (splits, n))
    gemv_pairs_kernel[(tiles_n, splits)](
        x2d, w.packed, w.meta_pairs, out, partials, counters, n, x2d.shape[1], kp, per_split,
        GROUP=w.group, BLOCK_N=config.block_n, WORDS=config.block_k // w.codes_per_word, SPLIT_K=splits, BITS=w.bits,
        X_IS_BF16=x2d.dtype == torch.bfloat16, USE_ASM=not interpreting(),
        EVEN_K=x2d.shape[1] == kp and kp % config.block_k == 0,
        EVEN_N=n % config.block_n == 0, GLU=glu, PROBE=probe, **launch_arguments(x2d.device, follows_product),
        num_warps=config.num_warps, num_stages=config.num_stages)


def _takes_paired_gemv(x2d: torch.Tensor, w: KernelWeights, config: LaunchConfig) -> bool:
    return config.block_m == 1 and paired_gemv_applies(x2d, w) and tile_fits_group(config.block_k, w.group)


def _launch(x2d: torch.Tensor, w: KernelWeights, config: LaunchConfig, out: torch.Tensor,
            follows_product: bool = False) -> None:
    """Run one configuration: ``out[M, N] = x2d[M, K] @ W`` (out must not alias x2d).  ``follows_product``:
    see :func:`launch_quant_matmul`."""
    if _takes_paired_gemv(x2d, w, config):
        _launch_paired(x2d, w, config, out, follows_product=follows_product)
        return
    m, k = x2d.shape
    n, kp = w.out_features, w.padded_in_features
    per_split, splits = _k_split(kp, config)
    tiles_n = -(-n // config.block_n)
    grid = (-(-m // config.block_m) * tiles_n, splits)
    pairs = config.pairs and pairs_apply(x2d, w) and w.group % config.block_k == 0
    if config.block_m > 1 and pairs and config.gluon and gluon_applies(x2d, w) and n % config.block_n == 0:
        _launch_gluon(x2d, w, config, out)
        return
    if config.block_m > 1 and pairs and config.swap_ab:  # also a Gluon launch where Gluon cannot run it
        _launch_swap_ab(x2d, w, config, out, grid, per_split)
        return
    common = dict(BITS=w.bits, CODES_PER_WORD=w.codes_per_word, TILE_IN_ONE_GROUP=w.group % config.block_k == 0,
                  BLOCK_N=config.block_n, BLOCK_K=config.block_k, num_warps=config.num_warps,
                  num_stages=config.num_stages)
    if config.block_m == 1:
        partials, counters = _split_k_buffers(out, tiles_n, splits, (splits, n))
        for row in range(m):  # the GEMV path is only chosen for M == 1; the loop keeps misuse correct
            kernels.gemv_kernel[(tiles_n, splits)](
                x2d[row], w.packed, w.scales, w.offsets, out[row], partials, counters, n, k, kp,
                w.group, per_split, splits, **common, **launch_arguments(x2d.device, follows_product))
        return
    use_partials = splits > 1
    partials = torch.empty((splits, m, n), device=x2d.device, dtype=torch.float32) if use_partials else out
    kernels.dot_kernel[grid](
        x2d, w.packed, w.scales, w.offsets, w.meta_pairs if pairs else w.scales, out, partials, m, n, k, kp,
        w.group, per_split, x2d.stride(0),
        BLOCK_M=config.block_m, DOT_PRECISION="tf32", DOT_IN_FLOAT32=x2d.dtype == torch.float32 or interpreting(),
        UNPACK_BY_WORDS=config.unpack_by_words, PAIRS=pairs, USE_ASM=not interpreting(), USE_PARTIALS=use_partials,
        **common)
    if use_partials:
        numel = m * n
        kernels.splitk_reduce_kernel[(-(-numel // _REDUCE_BLOCK),)](
            partials, out, numel, SPLIT_K=splits, BLOCK=_REDUCE_BLOCK, num_warps=4)


def _bf16_product(x2d: torch.Tensor, config: LaunchConfig) -> bool:
    """Whether the swapped kernel multiplies in bfloat16 (weights decoded to bfloat16, about 3e-3 relative
    error against 1.7e-3) instead of converting the activations to float16: with bfloat16 activations and
    at least 64 rows per tile, where the per-element conversion of the activation tile costs more than
    the extra shifts of the bfloat16 decode (offline SASS: 261 against 288 instructions per 128 x 64 tile,
    397 against 377 at 16 rows)."""
    return x2d.dtype == torch.bfloat16 and config.block_m >= 64


def _launch_swap_ab(x2d: torch.Tensor, w: KernelWeights, config: LaunchConfig, out: torch.Tensor,
                    grid: tuple[int, int], per_split: int) -> None:
    m, k = x2d.shape
    splits = grid[1]
    partials, counters = _split_k_buffers(out, grid[0], splits, (splits, m, w.out_features))
    swap_ab_kernel[grid](
        x2d, w.packed, w.meta_pairs, out, partials, counters, m, w.out_features, k, per_split,
        x2d.stride(0), splits, GROUP=w.group, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
        BLOCK_K=config.block_k, EVEN_K=k % config.block_k == 0, USE_ASM=not interpreting(),
        DOT_IN_FLOAT32=interpreting(), BF16=_bf16_product(x2d, config),
        REDUCE_IN_FLIGHT=_partials_in_flight(splits, config),
        num_warps=config.num_warps, num_stages=config.num_stages)


def _partials_in_flight(splits: int, config: LaunchConfig) -> int:
    """Split-K partials a tensor-core launch's last program loads at once (``splitk.partials_in_flight``)."""
    return partials_in_flight(splits, config.block_m * config.block_n, 32 * config.num_warps)


def gluon_applies(x2d: torch.Tensor, w: KernelWeights) -> bool:
    """Whether the Gluon kernel (``gluon_swap.py``) can run this product: Hopper, a Triton with Gluon, int4 with
    float16 metadata pairs, and activations exactly as wide as the packed K (it reads no padding)."""
    return (gluon_swap.AVAILABLE and not interpreting() and x2d.device.type == "cuda"
            and gpu_facts(x2d.device).major == 9 and x2d.shape[1] == w.padded_in_features and pairs_apply(x2d, w))


def _launch_gluon(x2d: torch.Tensor, w: KernelWeights, config: LaunchConfig, out: torch.Tensor) -> None:
    m, k = x2d.shape
    per_split, splits = pair_split(k, config.block_k, config.split_k, config.parts)
    tiles = -(-m // config.block_m) * (w.out_features // config.block_n)
    partials, counters = _split_k_buffers(out, tiles, splits, (splits, m, w.out_features))
    gluon_swap.gluon_swap_kernel[(tiles, splits)](
        x2d, w.packed, w.meta_pairs, out, partials, counters, m, w.out_features, k, per_split, x2d.stride(0),
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP=w.group, SPLIT_K=splits,
        WARPS=config.num_warps, STAGES=config.num_stages,
        IN_FLIGHT=_partials_in_flight(splits, config), PARTS=config.parts,
        num_warps=config.num_warps)


def chosen_config(x2d: torch.Tensor, w: KernelWeights, allow_tuning: bool = True) -> LaunchConfig:
    """The configuration for this problem: memoised, else from the disk cache, else tuned now (on a GPU,
    outside graph capture) and cached, else an untuned default."""
    m = x2d.shape[0]
    kp = w.padded_in_features
    paired = paired_gemv_applies(x2d, w) if m == 1 else pairs_apply(x2d, w)
    memo_key = (x2d.device, w.bits, w.group, m_bucket(m), w.out_features, kp, x2d.dtype, paired)
    config = _config_memo.get(memo_key)
    if config is not None:
        return config
    name, sms, _ = gpu_facts(x2d.device)
    if x2d.device.type != "cuda":
        return default_config(m, w.out_features, kp, w.group, sms, paired, w.bits)
    _counters(x2d.device)  # allocated now, not inside a graph capture (split-K launches count arrivals)
    dtype = str(x2d.dtype).removeprefix("torch.")
    key = tuning_key(name, kernel_path(m, paired), w.bits, w.group, m, w.out_features, kp, dtype)
    config = AUTOTUNE_CACHE.get(key)
    if config is None:
        if torch.cuda.is_current_stream_capturing():
            _warn_once(f"no tuned Triton config for {key}; using an untuned default (call tune() before capture)")
            return default_config(m, w.out_features, kp, w.group, sms, paired, w.bits)
        if not allow_tuning or not tuning_enabled():
            _warn_once(f"no tuned Triton config for {key}; using an untuned default (tuning switched off)")
            config = _runnable_default(x2d, w, sms, paired)
        else:
            config = _tune_now(x2d, w, key, sms, paired)
    _config_memo[memo_key] = config
    return config


def _runnable_default(x2d: torch.Tensor, w: KernelWeights, multiprocessors: int, paired: bool) -> LaunchConfig:
    """The untuned default, or, where it needs more shared memory or registers than this GPU has (a deep
    pipeline of wide tiles, say), the first other candidate that compiles and runs here: found by
    launching each once on the real operands (nothing is timed)."""
    m, kp = x2d.shape[0], w.padded_in_features
    first = default_config(m, w.out_features, kp, w.group, multiprocessors, paired, w.bits)
    others = [c for c in candidate_configs(m, w.out_features, kp, w.group, multiprocessors, paired, w.bits)
              if c != first]
    out = torch.empty((m, w.out_features), device=x2d.device, dtype=x2d.dtype)
    for config in [first] + others:
        try:
            _launch(x2d, w, config, out)
            return config
        except OutOfResources as err:
            _log.info("graphpress: launch %s does not fit this GPU (%s); trying the next", config, err)
    raise RuntimeError(f"no launch configuration fits this GPU among {1 + len(others)} candidates")


def weight_copies(w: KernelWeights) -> list[KernelWeights]:
    """``w`` and enough clones that timing a product over them reads its weights from device memory, not L2
    (what the autotuner times on, and ``benchmarks/launch_sweep.py``)."""
    weight_bytes = sum(t.numel() * t.element_size() for t in (w.packed, w.scales, w.offsets))
    rotation = copies_to_defeat_l2(weight_bytes, maximum=16)
    return [w] + [replace(w, packed=w.packed.clone(), scales=w.scales.clone(), offsets=w.offsets.clone(),
                          meta_pairs=None if w.meta_pairs is None else w.meta_pairs.clone())
                  for _ in range(rotation - 1)]


def _tune_now(x2d: torch.Tensor, w: KernelWeights, key: str, multiprocessors: int, paired: bool) -> LaunchConfig:
    """Time every candidate on copies of the weights (more than L2 holds) and store the fastest; with
    ``GRAPHPRESS_AUTOTUNE=fast``, every tile and then every split of the fastest tiles only."""
    copies = weight_copies(w)
    rotation = len(copies)
    outputs = [torch.empty((x2d.shape[0], w.out_features), device=x2d.device, dtype=x2d.dtype) for _ in copies]
    candidates = candidate_configs(x2d.shape[0], w.out_features, w.padded_in_features, w.group, multiprocessors,
                                   paired, w.bits, gluon=gluon_applies(x2d, w))
    m, n, kp = x2d.shape[0], w.out_features, w.padded_in_features

    def programs(config: LaunchConfig) -> int:
        splits = pair_split(kp, config.block_k, config.split_k, config.parts)[1] if config.gluon else _k_split(kp, config)[1]
        return -(-m // config.block_m) * -(-n // config.block_n) * splits

    with plain_launches():
        config, us = pick_fastest(candidates, lambda c, i: (lambda: _launch(x2d, copies[i], c, outputs[i])), rotation,
                                  programs if fast_tuning() else None, multiprocessors)
    _log.info("graphpress: tuned %s -> %s (%.1f us, %d candidates)", key, config, us, len(candidates))
    AUTOTUNE_CACHE.put(key, config)
    return config


def launch_quant_matmul(x: torch.Tensor, w: KernelWeights, config: LaunchConfig | None = None,
                        glu: int = 0, follows_product: bool = False) -> torch.Tensor:
    """``x[..., K] @ W`` through the Triton kernels (the body of the custom op; callable directly too).

    ``glu`` (1 + index into ``layout.GATED_ACTIVATIONS``; 0: none): W's columns are interleaved ``(gate, up)``
    pairs and the result is ``act(gate) * up`` (``N / 2`` columns), in the batch-1 kernel's epilogue where
    it runs, else after the product.  ``follows_product``: ``x`` is written by the graphpress product
    launched just before this one, so (``GRAPHPRESS_PDL=chain``, the default, on Hopper) the batch-1
    kernel starts as its programmatic dependent (``pdl.py``); any value is correct, it only changes timing."""
    if not 0 <= glu <= len(GATED_ACTIVATIONS):
        raise ValueError(f"glu={glu}: expected 0 or 1..{len(GATED_ACTIVATIONS)} ({GATED_ACTIVATIONS})")
    x2d = x.reshape(-1, x.shape[-1])
    if x2d.stride(-1) != 1:
        x2d = x2d.contiguous()
    width = w.out_features // 2 if glu else w.out_features
    if x2d.shape[0] == 0:
        return x.new_empty((*x.shape[:-1], width))
    config = config or chosen_config(x2d, w)
    if glu and _takes_paired_gemv(x2d, w, config):
        out = torch.empty((x2d.shape[0], width), device=x.device, dtype=x.dtype)
        _launch_paired(x2d, w, config, out, glu=glu, follows_product=follows_product)
    else:
        out = torch.empty((x2d.shape[0], w.out_features), device=x.device, dtype=x.dtype)
        _launch(x2d, w, config, out, follows_product)
        out = gated_columns(out, GATED_ACTIVATIONS[glu - 1]) if glu else out
    return out.reshape(*x.shape[:-1], width)


def _weights(packed: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor, bits: int, source_bits: int,
             group: int, in_features: int, meta_pairs: torch.Tensor | None) -> KernelWeights:
    return KernelWeights(packed, scales, offsets, bits, source_bits, group, in_features, packed.shape[1], meta_pairs)


@torch.library.custom_op("graphpress::quant_matmul", mutates_args=())
def quant_matmul(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor,
                 bits: int, group: int, in_features: int, meta_pairs: Optional[torch.Tensor] = None,
                 glu: int = 0, follows_product: bool = False) -> torch.Tensor:
    """``x[..., in_features] @ dequant(W)`` for a weight in kernel layout (see :mod:`.layout`); with ``glu``,
    ``act(gate) * up`` of its interleaved ``(gate, up)`` columns; ``follows_product`` as in
    :func:`launch_quant_matmul`."""
    return launch_quant_matmul(x, _weights(packed, scales, offsets, bits, bits, group, in_features, meta_pairs),
                               glu=glu, follows_product=follows_product)


@quant_matmul.register_fake
def _quant_matmul_fake(x, packed, scales, offsets, bits, group, in_features, meta_pairs=None, glu=0,
                       follows_product=False):
    return x.new_empty((*x.shape[:-1], packed.shape[1] // 2 if glu else packed.shape[1]))


def tune(w: KernelWeights, rows: Iterable[int], dtype: torch.dtype = torch.bfloat16) -> dict[int, LaunchConfig]:
    """Tune (or read from the cache) the launch for each M in ``rows`` on the current GPU; returns the choices."""
    device = w.packed.device
    choices = {}
    for m in rows:
        x = torch.randn((m, w.in_features), device=device, dtype=dtype)
        choices[m] = chosen_config(x, w)
    return choices
