"""``graphpress inspect MODEL``: ops, parameters and FLOPs per layer; ``--groups`` prints coupling groups."""

from __future__ import annotations

import argparse
from collections import Counter

from ..analysis import count_flops, flops_by_scope
from ..io import load_model
from ..ir import Graph

__all__ = ["add_parser", "graph_for", "summarize"]


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show a model's ops, parameters, FLOPs per layer (and coupling groups)")
    p.add_argument("model", help="ONNX file, Hugging Face folder, or an embedded name (smollm2, minilm)")
    p.add_argument("--groups", action="store_true", help="print the coupling groups pruning would use")
    p.add_argument("--depth", type=int, default=3, help="module-path depth for the FLOPs table (default 3)")
    p.add_argument("--graph", action="store_true", help="print the whole IR")
    p.add_argument("--report", metavar="DIR", help="write an HTML report of the groups into DIR")
    p.set_defaults(run=run)


def graph_for(spec: str) -> Graph:
    """Trace or load the model a CLI spec names."""
    loaded = load_model(spec)
    if loaded.kind == "onnx":
        from ..frontends.onnx_import import load_onnx

        return load_onnx(loaded.model)
    from ..api import default_example_inputs
    from ..frontends.torch_export import trace

    return trace(loaded.model, default_example_inputs(loaded.model) or (), inplace=True)


def summarize(graph: Graph, depth: int = 3) -> str:
    ops = Counter(n.qualified_op for n in graph.nodes)
    lines = [f"{graph.name}: origin {graph.origin}, opset {graph.opset}, {len(graph.nodes)} nodes, "
             f"{graph.parameter_count():,} parameters, {count_flops(graph) / 1e9:.3f} GFLOPs per example"]
    lines.append("ops: " + ", ".join(f"{op} x{k}" for op, k in ops.most_common()))
    lines.append(f"{'scope':60} {'GFLOPs':>10}")
    for scope, flops in flops_by_scope(graph, depth).items():
        if flops:
            lines.append(f"{scope[:60]:60} {flops / 1e9:10.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    graph = graph_for(args.model)
    print(summarize(graph, args.depth))
    if args.graph:
        from ..ir import format_graph

        print(format_graph(graph))
    if args.groups or args.report:
        from ..analysis.coupling import analyze_coupling, format_groups  # type: ignore[attr-defined]

        groups = analyze_coupling(graph)
        if args.groups:
            print(format_groups(groups))
        if args.report:
            from ..report import write_groups_report  # type: ignore[attr-defined]

            print(f"report: {write_groups_report(graph, groups, args.report)}")
    return 0
