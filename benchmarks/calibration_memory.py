"""Peak memory of block-by-block calibration on SmolLM2-135M (issue 4): what a pruning or quantization pass
adds to the resident memory while it collects activation statistics.

The calibration walk keeps one block's inputs at a time, so the peak should be a few hidden states of the
calibration set, not one per layer (30 of them would be about 1 GiB for 32 windows of 512 tokens).

    PYTHONPATH=. python benchmarks/calibration_memory.py [--windows 32]
"""

from __future__ import annotations

import argparse
import gc
import time

import torch

from graphpress.calibration import run_blockwise
from graphpress.eval import calibration_windows
from graphpress.eval.memory import PeakResidentMemory
from graphpress.models import load_smollm2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load_smollm2()
    windows = calibration_windows(tokenizer, n_windows=args.windows)
    hidden = windows.numel() * model.config.hidden_size * 4
    layers = model.config.num_hidden_layers
    print(f"one hidden state of the calibration set: {hidden / 2**20:.0f} MiB; {layers} layers of them: "
          f"{layers * hidden / 2**20:.0f} MiB")
    print("| statistics | peak extra RSS MiB | in hidden states | seconds |\n|---|---|---|---|")
    for gram in (False, True):
        gc.collect()
        started = time.perf_counter()
        with PeakResidentMemory() as memory:
            run_blockwise(model, windows, batch_size=4, callback=lambda context: None, keep_stats=False,
                          with_gram=gram)
        label = "norms + Gram matrices (GPTQ, SparseGPT, reconstruct)" if gram else "norms (Wanda, FLAP)"
        print(f"| {label} | {memory.extra_bytes / 2**20:.0f} | {memory.extra_bytes / hidden:.1f} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
