"""Where a batch-1 int4 product's time above its read floor goes (KERNEL_NOTES run 34).

A copy of the batch-1 kernel's loop (``gemv_pairs.py``, same loads, same register double-buffering) with two
switches, launched with each shape's tuned configuration:

* ``ALU=1`` replaces the decode and dot product with an XOR of the loaded words (about 6 instead of 22
  instructions per word): what the arithmetic costs;
* ``TAIL=1`` replaces the split-K epilogue (partial store, release fence, arrival atomic, the last program's
  partial loads) with a plain store of each partial: what the in-launch reduction costs.

Outputs with a switch on are wrong by design; only the times matter.  Run on the GPU machine from the repository
root (with the autotune cache of the kernels section): ``python3 benchmarks/overhead_probe.py``; prints one table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from read_floor import read_floor_us  # noqa: E402

from graphpress.backends.triton import TritonQuantLinear, rtn_quantize  # noqa: E402
from graphpress.backends.triton.gemv_pairs import _load_meta, _load_words, _load_x_pairs, _tile_dot  # noqa: E402
from graphpress.backends.triton.ops import _k_split, _split_k_buffers, chosen_config  # noqa: E402
from graphpress.backends.triton.splitk import store_or_reduce  # noqa: E402
from graphpress.backends.triton.timing import copies_to_defeat_l2, graph_time_us  # noqa: E402

SHAPES = (("qkv", 12288, 4096), ("o", 4096, 4096), ("gate_up", 22016, 4096), ("down", 4096, 11008))


@triton.jit
def _probe_kernel(x_ptr, w_ptr, m_ptr, out_ptr, part_ptr, count_ptr, N, K, Kp, k_per_split, GROUP: tl.constexpr,
                  BLOCK_N: tl.constexpr, WORDS: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr,
                  EVEN_N: tl.constexpr, ALU: tl.constexpr, TAIL: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    rows = tl.arange(0, WORDS)
    x_pairs = x_ptr.to(tl.pointer_type(tl.int32))
    half_k = K // 2
    acc = tl.zeros((WORDS, BLOCK_N), dtype=tl.float32)
    k_begin = pid_k * k_per_split
    k_end = tl.minimum(k_begin + k_per_split, Kp)
    tile_words = WORDS * 8
    end_row = k_end // 8
    last_group = Kp // GROUP - 1
    word_rows = k_begin // 8 + rows
    words = _load_words(w_ptr, word_rows, end_row, offs_n, mask_n, N, EVEN_N)
    meta = _load_meta(m_ptr, k_begin // GROUP, last_group, N, offs_n, mask_n, WORDS, GROUP // 8, EVEN_N)
    x0, x1, x2, x3 = _load_x_pairs(x_pairs, word_rows, half_k, end_row - 1, True, True, EVEN_K, 4)
    for k_start in range(k_begin, k_end, tile_words):
        k_next = k_start + tile_words
        next_rows = k_next // 8 + rows
        words_next = _load_words(w_ptr, next_rows, end_row, offs_n, mask_n, N, EVEN_N)
        meta_next = _load_meta(m_ptr, tl.minimum(k_next, k_end - 1) // GROUP, last_group, N, offs_n, mask_n, WORDS,
                               GROUP // 8, EVEN_N)
        n0, n1, n2, n3 = _load_x_pairs(x_pairs, next_rows, tl.minimum(half_k, end_row * 4), end_row - 1, True, True,
                                       EVEN_K, 4)
        if ALU == 1:
            acc += (words ^ meta ^ x0 ^ x1 ^ x2 ^ x3).to(tl.float32)
        else:
            acc += _tile_dot(words, meta, x0, x1, x2, x3, 4, True)
        words, meta, x0, x1, x2, x3 = words_next, meta_next, n0, n1, n2, n3
    if TAIL == 1:
        tl.store(part_ptr + pid_k * N + offs_n, tl.sum(acc, axis=0), mask=mask_n)
    else:
        store_or_reduce(tl.sum(acc, axis=0), out_ptr, part_ptr, count_ptr, pid_n, offs_n, mask_n, N, pid_k, SPLIT_K)


def _launch(x, w, config, out, alu: int, tail: int) -> None:
    n, kp = w.out_features, w.padded_in_features
    per_split, splits = _k_split(kp, config)
    tiles_n = -(-n // config.block_n)
    partials, counters = _split_k_buffers(out, tiles_n, splits, (max(splits, 2), n))
    _probe_kernel[(tiles_n, splits)](
        x, w.packed, w.meta_pairs, out, partials, counters, n, x.shape[1], kp, per_split, GROUP=w.group,
        BLOCK_N=config.block_n, WORDS=config.block_k // 8, SPLIT_K=splits,
        EVEN_K=x.shape[1] == kp and kp % config.block_k == 0, EVEN_N=n % config.block_n == 0, ALU=alu, TAIL=tail,
        num_warps=config.num_warps, num_stages=config.num_stages)


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("overhead_probe.py needs a CUDA GPU")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    print("| shape (tuned launch) | read floor us | product us | probe, as is | XOR instead of decode | "
          "no split-K tail | both |")
    print("|---|---|---|---|---|---|---|")
    for name, n, k in SHAPES:
        torch.manual_seed(0)
        weight = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        layers = [TritonQuantLinear.from_quantized(rtn_quantize(weight, 4, 128))]
        nbytes = sum(t.numel() * t.element_size() for t in (layers[0].packed, layers[0].scales, layers[0].offsets))
        layers += [TritonQuantLinear.from_quantized(rtn_quantize(weight, 4, 128))
                   for _ in range(copies_to_defeat_l2(nbytes) - 1)]
        x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
        weights = [layer.kernel_weights() for layer in layers]
        outs = [torch.empty(1, n, device="cuda", dtype=torch.bfloat16) for _ in weights]
        config = chosen_config(x, weights[0])
        product = graph_time_us([lambda layer=layer, x=x: layer(x) for layer in layers])
        times = [graph_time_us([lambda w=w, o=o, a=alu, t=tail, x=x, c=config: _launch(x, w, c, o, a, t)
                                for w, o in zip(weights, outs)])
                 for alu, tail in ((0, 0), (1, 0), (0, 1), (1, 1))]
        floor, _ = read_floor_us(nbytes)
        launch = f"{config.block_n} x {config.block_k}, split {config.split_k}, {config.num_warps} warps"
        print(f"| {name} ({launch}) | {floor:.1f} | {product:.1f} | " + " | ".join(f"{t:.1f}" for t in times) + " |",
              flush=True)
        del layers, weights, outs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
