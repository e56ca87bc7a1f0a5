"""Where a batch-1 int4 product's time above its read floor goes (KERNEL_NOTES run 34).

The batch-1 kernel itself (``gemv_pairs.gemv_pairs_kernel``) with its ``PROBE`` switches, launched with each
shape's tuned configuration:

* bit 1 replaces the decode and dot product with an XOR of the loaded words (about 6 instead of 22
  instructions per word): what the arithmetic costs;
* bit 2 replaces the split-K epilogue (partial store, release fence, arrival atomic, the last program's
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
from read_floor import read_floor_us  # noqa: E402

from graphpress.backends.triton import TritonQuantLinear, rtn_quantize  # noqa: E402
from graphpress.backends.triton.ops import _launch_paired, chosen_config  # noqa: E402
from graphpress.backends.triton.timing import copies_to_defeat_l2, graph_time_us  # noqa: E402

SHAPES = (("qkv", 12288, 4096), ("o", 4096, 4096), ("gate_up", 22016, 4096), ("down", 4096, 11008))


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
        times = [graph_time_us([lambda w=w, o=o, p=probe, x=x, c=config: _launch_paired(x, w, c, o, probe=p)
                                for w, o in zip(weights, outs)])
                 for probe in (0, 1, 2, 3)]
        floor, _ = read_floor_us(nbytes)
        launch = f"{config.block_n} x {config.block_k}, split {config.split_k}, {config.num_warps} warps"
        print(f"| {name} ({launch}) | {floor:.1f} | {product:.1f} | " + " | ".join(f"{t:.1f}" for t in times) + " |",
              flush=True)
        del layers, weights, outs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
