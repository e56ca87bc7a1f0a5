"""GPU memory of ``graphpress.optimize`` on a Llama-2-7B-shaped model (13.5 GB in bfloat16), by where the
rollback snapshots live; then a failing pipeline run in place, restored from its host copy.

Rows (each on a freshly built model, random bfloat16 weights, on the GPU):

* ``copy, device snapshots``: the default below half of free memory: the user's model, a working copy and
  a snapshot before each pass, all on the GPU;
* ``copy, host snapshots``: the same with snapshots in CPU memory;
* ``in place, host snapshots``: ``inplace=True`` with host snapshots: the user's model itself is compressed,
  a copy of it waits in host memory;
* ``in place, host snapshots, failing``: the same pipeline with a pass that zeroes every weight and raises
  appended: the model must come back bit for bit (checked on a few tensors) with no second device copy.

Each row prints the wall time and the peak GPU memory beyond the model itself.  Run on the GPU machine from
the repository root: ``python3 benchmarks/optimize_memory.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_kernels import _build_llama_7b  # noqa: E402

import graphpress  # noqa: E402
from graphpress.errors import PassError  # noqa: E402
from graphpress.testing.faults import ZeroWeightsThenFail  # noqa: E402

PIPELINE = 'quantize{bits=4,group=128,ignore=""}'


def _probes(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    layers = model.model.layers
    return {"embed": model.model.embed_tokens.weight, "q0": layers[0].self_attn.q_proj.weight,
            "down31": layers[-1].mlp.down_proj.weight, "lm_head": model.lm_head.weight}


def _row(label: str, failing: bool, **options) -> None:
    torch.cuda.empty_cache()
    model = _build_llama_7b()
    model_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    before = {k: v.detach().float().cpu().clone() for k, v in _probes(model).items()} if failing else {}
    prompt = torch.randint(0, 32000, (1, 16), device="cuda")
    passes = [PIPELINE, ZeroWeightsThenFail()] if failing else PIPELINE
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    started = time.perf_counter()
    outcome = "ok"
    try:
        result = graphpress.optimize(model, passes, example_inputs=(prompt,), example_kwargs={"use_cache": False},
                                     **options)
    except PassError as err:
        result = model
        outcome = "failed as injected; " + str(err).splitlines()[-1]
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak_gib = (torch.cuda.max_memory_allocated() - base) / 2**30
    if failing:
        same = all(torch.equal(before[k], v.detach().float().cpu()) for k, v in _probes(result).items())
        on_gpu = all(p.device.type == "cuda" for p in result.parameters())
        outcome += f"; weights as before: {same}; on the GPU: {on_gpu}"
    print(f"| {label} | {model_gib:.1f} | {seconds:.1f} | {peak_gib:.1f} | {outcome} |", flush=True)
    del model, result
    torch.cuda.empty_cache()


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("optimize_memory.py needs a CUDA GPU")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; pipeline {PIPELINE}")
    print("| run | model GiB | seconds | peak GPU GiB beyond the model | outcome |")
    print("|---|---|---|---|---|")
    _row("copy, device snapshots", False, snapshots="device")
    _row("copy, host snapshots", False, snapshots="host")
    _row("in place, host snapshots", False, inplace=True, snapshots="host")
    _row("in place, host snapshots, failing", True, inplace=True, snapshots="host")


if __name__ == "__main__":
    main()
