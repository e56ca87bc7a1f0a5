"""Every launch candidate of one product, timed side by side and ranked (what the autotuner sees).

For each ``--shapes`` x ``--rows`` (Llama-2-7B linears, int4 g128 RTN, bfloat16 activations) this times
every configuration ``configs.candidate_configs`` offers (``--families``: only those kernel families), the
same way the autotuner does (CUDA-graph replays over weight copies that defeat L2), checks each launch's
output once against a float32 product (poisoned first; relative error), and prints the fastest ``--top`` with
their times, then the best launch of each kernel family (swapped operands, float16 pairs, word or element
loads), so a change to the candidate lists or to a kernel can be judged by its ranking, not by one chosen launch.

Run from the repository root on the GPU machine: ``python3 benchmarks/launch_sweep.py --shapes o --rows 128``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from bench_kernels import SHAPES as KERNEL_SHAPES  # noqa: E402
from bench_kernels import relative_error  # noqa: E402

from graphpress.backends.triton import ops  # noqa: E402
from graphpress.backends.triton.configs import LaunchConfig, candidate_configs  # noqa: E402
from graphpress.backends.triton.gpu_facts import gpu_facts  # noqa: E402
from graphpress.backends.triton.layout import dequantize_kernel_weights, repack_for_kernels  # noqa: E402
from graphpress.backends.triton.pdl import plain_launches  # noqa: E402
from graphpress.backends.triton.reference import rtn_quantize  # noqa: E402
from graphpress.backends.triton.timing import graph_time_us  # noqa: E402

SHAPES = {name: (n, k) for name, n, k in KERNEL_SHAPES}


def _family(config: LaunchConfig) -> str:
    if config.gluon:
        return "gluon swap_ab" if config.parts == 1 else f"gluon swap_ab, {config.parts} warp groups"
    return "swap_ab" if config.swap_ab else "pairs" if config.pairs else "words" if config.unpack_by_words else "dot"


def sweep(name: str, rows: int, top: int, families: list[str] | None = None) -> None:
    n, k = SHAPES[name]
    gen = torch.Generator(device="cuda").manual_seed(n + k)
    q = rtn_quantize(torch.randn(n, k, device="cuda", generator=gen) * 0.02, 4, 128)
    w = repack_for_kernels(q.qweight, q.scales, q.zeros, 4, 128, k, meta_dtype=torch.float16)
    x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16, generator=gen)
    copies = ops.weight_copies(w)
    rotation = len(copies)
    outs = [torch.empty(rows, n, device="cuda", dtype=torch.bfloat16) for _ in copies]
    paired = ops.paired_gemv_applies(x, w) if rows == 1 else ops.pairs_apply(x, w)
    candidates = candidate_configs(rows, n, w.padded_in_features, 128, gpu_facts(x.device).multiprocessors, paired,
                                   gluon=ops.gluon_applies(x, w))
    if families:
        candidates = [c for c in candidates if any(f in _family(c) for f in families)]
    reference = (x.double() @ dequantize_kernel_weights(w).double())
    timed = []
    with plain_launches():
        for config in candidates:
            try:
                us = graph_time_us([lambda c=config, i=i: ops._launch(x, copies[i], c, outs[i])
                                    for i in range(rotation)], replays=5)
            except Exception as err:  # noqa: BLE001 - a launch that does not compile is reported, not fatal
                print(f"  skipped {config}: {type(err).__name__}")
                continue
            outs[0].fill_(float("nan"))  # poisoned: a launch that leaves an output unwritten shows
            ops._launch(x, copies[0], config, outs[0])
            error = relative_error(outs[0], reference)
            timed.append((us if error < 5e-3 else float("inf"), config, error))
    timed.sort(key=lambda t: t[0])
    wrong = [(config, error) for _, config, error in timed if not error < 5e-3]
    print(f"\n{name} {n}x{k}, M={rows}: {len(timed)} of {len(candidates)} candidates ran, {len(wrong)} wrong")
    for config, error in wrong:
        print(f"  WRONG (relative error {error:.2e}): {config}")
    print("| rank | us | rel err | config |\n|---|---|---|---|")
    for rank, (us, config, error) in enumerate(timed[:top], 1):
        print(f"| {rank} | {us:.1f} | {error:.1e} | {config} |")
    best: dict[str, tuple[float, LaunchConfig]] = {}
    for us, config, _ in timed:
        best.setdefault(_family(config), (us, config))
    print("| family | best us | config |\n|---|---|---|")
    for family, (us, config) in sorted(best.items(), key=lambda item: item[1][0]):
        print(f"| {family} | {us:.1f} | {config} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="o", help=f"comma-separated, of {sorted(SHAPES)}")
    parser.add_argument("--rows", default="16,128", help="comma-separated activation rows M")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--families", default="", help="comma-separated substrings of kernel family names to keep "
                                                       "(gluon, swap_ab, pairs, words, dot); default: all")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("launch_sweep.py needs a CUDA GPU")
    print(f"device: {torch.cuda.get_device_name()}")
    for name in args.shapes.split(","):
        for rows in map(int, args.rows.split(",")):
            sweep(name, rows, args.top, [f for f in args.families.split(",") if f])


if __name__ == "__main__":
    main()
