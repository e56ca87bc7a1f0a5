"""Speed of tracing + coupling analysis (issue 3): SmolLM2-135M (real weights), Llama-2-7B and Llama-2-70B
shapes on the meta device (no weight memory).

    PYTHONPATH=. python benchmarks/coupling_speed.py [--skip-70b]

Each row: seconds to trace (torch.export + lowering; two blocks traced and the rest cloned in the IR by
``trace_repeated_blocks``, or the whole model for comparison), seconds for the coupling analysis, node count, group
count and prunable groups. Writes benchmarks/results/coupling_speed.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from graphpress.analysis.coupling import compute_coupling
from graphpress.analysis.coupling.repeated_blocks import trace_repeated_blocks
from graphpress.frontends.torch_export import trace
from graphpress.testing.results import publish_lines
from graphpress.testing.zoo import meta_llama

RESULTS = os.path.join(os.path.dirname(__file__), "results", "coupling_speed.md")


def _measure(name: str, model: torch.nn.Module, inputs: tuple, kwargs: dict, repeated: bool = True) -> tuple:
    start = time.perf_counter()
    if repeated:
        graph = trace_repeated_blocks(model, inputs, example_kwargs=kwargs)
    else:
        graph = trace(model, inputs, example_kwargs=kwargs, inplace=True)
    name += " [trace_repeated_blocks]" if repeated else " [whole-model torch.export]"
    traced = time.perf_counter() - start
    start = time.perf_counter()
    result = compute_coupling(graph)
    analysed = time.perf_counter() - start
    prunable = sum(g.prunable for g in result.groups)
    row = (name, traced, analysed, len(graph.nodes), len(result.groups), prunable, len(result.uncovered))
    print(row, flush=True)
    return row


def main() -> None:
    sys.setrecursionlimit(100000)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-70b", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    from graphpress.models.zoo import load_smollm2

    model, _ = load_smollm2()
    tokens = (torch.zeros(1, 16, dtype=torch.long),)
    rows.append(_measure("SmolLM2-135M (30 layers, real weights)", model, tokens, {"use_cache": False}))
    rows.append(_measure("SmolLM2-135M (30 layers, real weights)", model, tokens, {"use_cache": False}, False))
    del model
    case = meta_llama()
    rows.append(_measure("Llama-2-7B shape, meta (32 layers)", case.model, (), {**case.inputs, **case.call_kwargs}))
    if not args.skip_70b:
        case = meta_llama(layers=80, hidden=8192, heads=64, kv_heads=8, intermediate=28672)
        rows.append(_measure("Llama-2-70B shape, meta (80 layers, GQA 64/8)", case.model, (),
                             {**case.inputs, **case.call_kwargs}))
    lines = ["# Tracing + coupling analysis speed (CPU, 2 threads, this machine)", "",
             "Command: `PYTHONPATH=. python benchmarks/coupling_speed.py`", "",
             "| model | trace s | coupling s | total s | IR nodes | groups | prunable groups | uncovered ops |",
             "|---|---|---|---|---|---|---|---|"]
    for name, traced, analysed, nodes, groups, prunable, uncovered in rows:
        lines.append(f"| {name} | {traced:.2f} | {analysed:.2f} | {traced + analysed:.2f} | {nodes} | {groups} | "
                     f"{prunable} | {uncovered} |")
    publish_lines(RESULTS, lines)


if __name__ == "__main__":
    main()
