"""``quantize`` then ``lower-triton`` on a GPU, over the tiny Hugging Face architectures of ``arch_sweep.py``.

For each architecture (``graphpress.testing.arch_zoo``: 2 layers, small widths, random weights) and each group
size: ``quantize{bits=4,group=G}`` on the CPU, the quantized model moved to the GPU in bfloat16 (the model under
test), then ``lower-triton`` (gated MLPs found, linears on the Triton kernels, the model re-traced).  Checked:

* the lowered model's first output against the *same quantized weights* run by torch in float32 (the reference):
  its relative error must be at most twice the error of torch's own bfloat16 run of those weights, plus 1e-3
  (bfloat16 rounding is the noise floor; a wrong kernel, layout or epilogue is far above it);
* for causal LMs, the same check on one token (batch 1: the GEMV kernels, the gated epilogue and the chained
  down projection run there; the example batch of 2 x 8 tokens runs the tensor-core kernels);
* the pass's counts: layers lowered, gated MLPs, chained products.

    python3 benchmarks/arch_triton_sweep.py [--only llama,gemma2] [--groups 32,64] [--jobs 2]

Needs a CUDA GPU.  Autotuning is off (``GRAPHPRESS_AUTOTUNE=0``: compiling every candidate for every tiny shape
would take longer than the sweep); untuned default launches are what is checked.  Each architecture runs in
its own child process.  Writes ``benchmarks/results/arch_triton_sweep.md`` (``--output`` elsewhere).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from arch_sweep import run_child, short  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results", "arch_triton_sweep.md")
FLOOR = 1e-3


def _relative(got, want) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def _on(value, device, dtype):
    """``value`` (a tensor, or a dict/tuple of them) on ``device``; floating tensors cast to ``dtype``."""
    import torch

    if isinstance(value, dict):
        return {k: _on(v, device, dtype) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_on(v, device, dtype) for v in value)
    if isinstance(value, torch.Tensor):
        return value.to(device, dtype) if value.is_floating_point() else value.to(device)
    return value


def _first_output(model, inputs, call_kwargs):
    import torch

    from graphpress.backends.evaluate import flatten_outputs

    with torch.no_grad():
        out = model(**inputs, **call_kwargs) if isinstance(inputs, dict) else model(*inputs)
    return flatten_outputs(out)[0]


def check_one(name: str, group: int) -> dict:
    """One architecture at one group size: the row of the table."""
    import torch

    import graphpress
    from graphpress.testing.arch_zoo import arch_case
    from graphpress.testing.zoo_checks import optimize_kwargs

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    row: dict = {"name": name, "group": group, "errors": []}
    start = time.perf_counter()
    try:
        case = arch_case(name)
        quantized = graphpress.optimize(case.model, f"quantize{{bits=4,group={group}}}", **optimize_kwargs(case))
    except Exception as error:  # noqa: BLE001 - a row's error, not the sweep's
        row["errors"].append("quantize: " + short(error))
        return row
    model16 = copy.deepcopy(quantized).to("cuda", torch.bfloat16)
    model32 = copy.deepcopy(model16).float()  # the same (bfloat16-rounded) weights, run in float32
    inputs16, inputs32 = _on(case.inputs, "cuda", torch.bfloat16), _on(case.inputs, "cuda", torch.float32)
    calls = [("batch", inputs16, inputs32)]
    if isinstance(case.inputs, dict) and set(case.inputs) == {"input_ids"}:
        one = {"input_ids": case.inputs["input_ids"][:1, :1].to("cuda")}
        calls.append(("one token", one, one))
    stage = "torch on the GPU"
    try:
        references = {label: _first_output(model32, i32, case.call_kwargs) for label, _, i32 in calls}
        floors = {label: _relative(_first_output(model16, i16, case.call_kwargs), references[label])
                  for label, i16, _ in calls}
        stage = "lower-triton"
        kwargs = optimize_kwargs(case)
        lowered, report = graphpress.optimize(
            model16, "lower-triton", example_inputs=_on(kwargs["example_inputs"], "cuda", torch.bfloat16),
            example_kwargs=_on(kwargs.get("example_kwargs"), "cuda", torch.bfloat16), return_report=True)
        row.update({k: int(v) for k, v in report.records[-1].stats.items() if isinstance(v, (int, bool))})
        stage = "lowered model"
        for label, i16, _ in calls:
            error = _relative(_first_output(lowered, i16, case.call_kwargs), references[label])
            row[f"{label} error"], row[f"{label} floor"] = error, floors[label]
            if not error <= 2 * floors[label] + FLOOR:
                row["errors"].append(f"{label}: error {error:.1e} above 2 x bfloat16's {floors[label]:.1e} + {FLOOR:g}")
    except Exception as error:  # noqa: BLE001
        row["errors"].append(f"{stage}: " + short(error))
        if os.environ.get("ARCH_SWEEP_TRACEBACK"):
            traceback.print_exc()
    row["ok"] = not row["errors"]
    row["seconds"] = time.perf_counter() - start
    return row


def table(rows: list[dict]) -> list[str]:
    from graphpress.testing.results import markdown_cell

    lines = ["| architecture | group | lowered | gated MLPs | chained | batch error (bf16 floor) | one token error "
             "(bf16 floor) | ok | s | errors |", "|---|---|---|---|---|---|---|---|---|---|"]
    def cell(r: dict, label: str) -> str:
        return f"{r[label + ' error']:.1e} ({r[label + ' floor']:.1e})" if label + " error" in r else "-"

    for r in rows:
        ok = "yes" if r.get("ok") else "**no**"
        seconds = f"{r['seconds']:.0f}" if "seconds" in r else "-"
        lines.append(f"| {r['name']} | {r.get('group', '-')} | {r.get('lowered', '-')} | {r.get('gated_mlps', '-')} | "
                     f"{r.get('chained', '-')} | {cell(r, 'batch')} | {cell(r, 'one token')} | {ok} | {seconds} | "
                     f"{markdown_cell('; '.join(r['errors']))} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated architecture names (default: all)")
    parser.add_argument("--groups", default="32,64", help="quantization group sizes")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per architecture and group")
    parser.add_argument("--jobs", type=int, default=2, help="architectures checked at once (one process each)")
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: NAME, then --group
    parser.add_argument("--group", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("GRAPHPRESS_AUTOTUNE", "0")
    if args.one:
        print(json.dumps(check_one(args.one, args.group)))
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("arch_triton_sweep.py needs a CUDA GPU")
    from graphpress.testing.arch_zoo import arch_case_names
    from graphpress.testing.results import publish_lines

    names = args.only.split(",") if args.only else arch_case_names()
    groups = [int(g) for g in args.groups.split(",")]
    jobs = [(name, group) for name in names for group in groups]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(run_child, name, args.timeout, __file__, ["--group", str(group)])
                   for name, group in jobs]
        rows = []
        for future in futures:
            rows.append(future.result())
            print(table(rows[-1:])[-1], file=sys.stderr, flush=True)
    passed = sum(bool(r.get("ok")) for r in rows)
    header = [
        "# `lower-triton` on a GPU over tiny Hugging Face architectures",
        "",
        f"Command: `python3 benchmarks/arch_triton_sweep.py --groups {args.groups}"
        f"{' --only ' + args.only if args.only else ''}` ({torch.cuda.get_device_name()}, torch "
        f"{torch.__version__}, transformers {__import__('transformers').__version__}, autotuning off).",
        "Each row: `quantize{bits=4,group=G}`, the model in bfloat16 on the GPU, `lower-triton`; errors are relative "
        "(Frobenius) against the same quantized weights run by torch in float32, next to torch's own bfloat16 "
        f"error (the floor); ok = at most 2 x floor + {FLOOR:g} on the example batch and, for causal LMs, on one "
        "token.",
        "",
        f"{passed} of {len(rows)} rows pass.",
        "",
    ]
    publish_lines(args.output, header + table(rows))


if __name__ == "__main__":
    main()
