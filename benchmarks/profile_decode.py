"""Where a decode step's GPU time goes: kernel time by kind for bf16 and graphpress int4 (issue 6).

Builds the Llama-2-7B-shaped model of ``bench_kernels.py`` (random bf16 weights on the GPU), compiles one
decode step with torch.compile *without* CUDA graphs (so the profiler sees every kernel), runs a few
steps under ``torch.profiler`` and prints, per variant, the GPU time of each kernel family per token and
the count of launches; then the same step replayed as a CUDA graph (``reduce-overhead``) for the
wall-clock time per token, so that "sum of kernel times" and "time per token" can be compared: their
difference is what the launches themselves (gaps between kernels) cost.

Run from the repository root on a GPU: ``python3 benchmarks/profile_decode.py [--variants bf16,int4-fused]``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import torch  # noqa: E402
from bench_kernels import _build_llama_7b, _fuse_projections  # noqa: E402

from graphpress.backends.triton import TritonQuantLinear, lower_linear_modules, rtn_quantize, tune  # noqa: E402

_FAMILIES = (("gemv_pairs", "graphpress paired GEMV"), ("swap_ab", "graphpress int4 M>1"), ("gemv_kernel", "graphpress GEMV"),
             ("gemv", "cuBLAS GEMV"), ("gemm", "cuBLAS GEMM"), ("nvjet", "cuBLAS GEMM"), ("flash", "attention"),
             ("fmha", "attention"), ("attention", "attention"), ("sdpa", "attention"), ("triton_", "inductor"),
             ("copy", "copies"), ("fill", "fills"), ("argmax", "argmax"), ("reduce", "reductions"))


def family(kernel_name: str) -> str:
    lowered = kernel_name.lower()
    for needle, label in _FAMILIES:
        if needle in lowered:
            return label
    return "other: " + kernel_name[:60]


def prepare(variant: str, prompt_len: int):
    model = _build_llama_7b()
    if variant == "bf16":
        return model
    with torch.no_grad():
        if variant == "int4-fused":
            _fuse_projections(model)
        lower_linear_modules(model, quantizer=lambda lin: rtn_quantize(lin.weight.data, 4, 128))
    torch.cuda.empty_cache()
    seen = set()
    for module in model.modules():
        if isinstance(module, TritonQuantLinear) and (module.out_features, module.in_features) not in seen:
            seen.add((module.out_features, module.in_features))
            tune(module, (1, prompt_len))
    return model


def profile(variant: str, steps: int, prompt_len: int = 16) -> None:
    from transformers import StaticCache

    model = prepare(variant, prompt_len)
    cache = StaticCache(config=model.config, max_cache_len=prompt_len + 2 * steps + 8)
    prompt = torch.randint(0, 32000, (1, prompt_len), device="cuda")

    def step(token, position):
        out = model(input_ids=token, position_ids=position.unsqueeze(0), cache_position=position,
                    past_key_values=cache, use_cache=True)
        return out.logits[:, -1]

    results = {}
    for mode in ("default", "reduce-overhead"):
        torch._dynamo.reset()
        compiled = torch.compile(step, mode=mode, fullgraph=True)
        with torch.no_grad():
            cache.reset()
            model(input_ids=prompt, cache_position=torch.arange(prompt_len, device="cuda"), past_key_values=cache,
                  use_cache=True)
            positions = torch.arange(prompt_len, prompt_len + 2 * steps, device="cuda")
            token = torch.zeros((1, 1), dtype=torch.long, device="cuda")
            for i in range(3):  # compile, warm up, record
                token = compiled(token, positions[i:i + 1].clone()).argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            if mode == "default":
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                    for i in range(steps):
                        token = compiled(token, positions[3 + i:4 + i].clone()).argmax(-1, keepdim=True)
                    torch.cuda.synchronize()
                totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
                for event in prof.events():
                    if event.device_type == torch.autograd.DeviceType.CUDA:
                        entry = totals[family(event.name)]
                        entry[0] += event.device_time_total
                        entry[1] += 1
                results["kernels"] = totals
            else:
                started = time.perf_counter()
                for i in range(steps):
                    token = compiled(token, positions[3 + i:4 + i].clone()).argmax(-1, keepdim=True)
                torch.cuda.synchronize()
                results["graph_ms"] = (time.perf_counter() - started) * 1e3 / steps
    totals = results["kernels"]
    busy = sum(v[0] for v in totals.values()) / steps / 1e3
    print(f"\n## {variant}: {results['graph_ms']:.3f} ms per token as a CUDA graph; kernels alone {busy:.3f} ms "
          f"({sum(v[1] for v in totals.values()) / steps:.0f} launches per token)")
    print("| kernel family | ms per token | launches per token | us per launch |")
    print("|---|---|---|---|")
    for name, (us, count) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(f"| {name} | {us / steps / 1e3:.3f} | {count / steps:.0f} | {us / count:.1f} |")
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="bf16,int4-fused")
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    for variant in args.variants.split(","):
        profile(variant, args.steps)


if __name__ == "__main__":
    main()
