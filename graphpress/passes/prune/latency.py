"""Per-unit latency costs of coupling groups, measured in onnxruntime (``prune-channels{cost=latency}``).

FLOPs and parameters say little about where a CPU spends its time: a 1x1 convolution at high resolution is
memory-bound, a narrow layer runs below the kernels' best throughput, fused element-wise ops ride along for
free. So the pass measures the target backend on the user's own model: the graph is written by graphpress'
ONNX backend, run a few times under onnxruntime's profiler (``SessionOptions.enable_profiling``), and the
median ``kernel_time`` of every node is taken. onnxruntime names a fused node after the value its fused
chain ends in (``relu_3_nchwc`` for Conv+BatchNorm+Add+Relu), so each timed node is resolved to an ONNX node
or value of the written model and walked back through weightless ops to the node that reads a weight: its
latency is charged to that weight. A kernel that reads weights itself (the convolution, the GEMM) shrinks
with each of the weight's axes; a weightless kernel that stays unfused after it (a pooling, an add) shrinks
only with the weight's output axis.

A group's per-position cost along a member (weight ``W``, axis ``a``) is ``latency(W) / W.shape[a]``: the
summed latency of the nodes whose input or output channels the group shrinks, divided by their channel
counts (a linear model of each kernel, exact for the first channels removed).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections import defaultdict

import numpy as np
import torch

from ...analysis.coupling import CouplingResult
from ...errors import PassError
from ...ir import Graph
from ...progress import progress

__all__ = ["profile_node_latency", "weight_latency", "unit_latency_costs", "example_feed", "nchwc_block"]

_WEIGHT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "MatMulNBits"}
_WALK_DEPTH = 6  # weightless ops between a timed node and the weight it is charged to (BN, Add, Relu, pooling)


def nchwc_block() -> int:
    """Channels per block of onnxruntime's NCHWc convolutions on this CPU: 16 with AVX-512, else 8. A
    convolution's channels are padded up to whole blocks, so kept counts should be multiples of it."""
    try:
        with open("/proc/cpuinfo") as handle:
            return 16 if " avx512f" in handle.read() else 8
    except OSError:
        return 8


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise PassError("prune-channels{cost=latency} measures latency with onnxruntime, which is not installed: "
                        "pip install onnxruntime (or use cost=params, the default)") from None
    return onnxruntime


def example_feed(graph: Graph, example_inputs: tuple | None) -> list[np.ndarray]:
    """Inputs to time the model on: the pipeline's example inputs, else random ones of the graph's shapes."""
    if example_inputs is not None:
        flat = [x for x in example_inputs if isinstance(x, torch.Tensor)]
        if len(flat) == len(graph.inputs):
            return [x.detach().cpu().float().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
                    for x in flat]
    out = []
    for value in graph.inputs:
        if value.shape is None or not all(isinstance(d, int) for d in value.shape):
            raise PassError(f"cost=latency needs example_inputs: input %{value.name} has no static shape to time with")
        dtype = value.dtype or torch.float32
        tensor = torch.randn(value.shape) if dtype.is_floating_point else torch.zeros(value.shape, dtype=dtype)
        out.append(tensor.to(dtype).numpy())
    return out


def profile_node_latency(model, feed: list[np.ndarray], runs: int = 5, threads: int = 2) -> dict[str, tuple[str, float]]:
    """Kernel time (microseconds) of every node onnxruntime runs: ``{node name: (op type, us)}``, the
    median of the faster half of ``runs`` profiled runs after one warm-up run (see :func:`_quiet_time`)."""
    ort = _ort()
    with tempfile.TemporaryDirectory(prefix="graphpress-profile-") as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        inputs = {i.name: x for i, x in zip(session.get_inputs(), feed)}
        with progress(runs + 1, "profiling onnxruntime latency") as bar:
            for _ in range(runs + 1):
                session.run(None, inputs)
                bar.update(1)
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
    times: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            node = name[: -len("_kernel_time")]
            times[node].append(float(event["dur"]))
            ops[node] = event.get("args", {}).get("op_name", "")
    # the first run is the warm-up: drop it where every run left an event
    return {n: (ops[n], _quiet_time(v[1:] if len(v) > runs else v)) for n, v in times.items()}


def _quiet_time(samples: list[float]) -> float:
    """The median of the faster half of the runs: on a shared machine a kernel whose thread was preempted
    takes several times longer, and those runs say nothing about the kernel (a plain median of five runs
    still kept 3-4x outliers under a load average of 2 on two cores)."""
    ordered = sorted(samples)
    return statistics.median(ordered[: max(1, (len(ordered) + 1) // 2)])


def _output_axis(node) -> int:
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans else 1
    return 0 if node.op_type.startswith("Conv") else 1


def weight_latency(model, node_latency: dict[str, tuple[str, float]]
                   ) -> tuple[dict[str, tuple[float, float, int]], float]:
    """Charge each timed node to a weight of ``model``: ``{initializer: (own us, output-only us, output axis
    of the ONNX weight)}`` and the microseconds charged to none (ops before any weight, reorders)."""
    graph = model.graph
    weights = {t.name for t in graph.initializer if len(t.dims) >= 2}
    by_name = {n.name: n for n in graph.node}
    producer = {o: n for n in graph.node for o in n.output}
    charged: dict[str, list[float]] = {}
    axis_of: dict[str, int] = {}
    lost = 0.0

    def resolve(name: str):
        for candidate in (name, name.removesuffix("_nchwc")):
            if candidate in by_name:
                return by_name[candidate]
            if candidate in producer:
                return producer[candidate]
        return None

    def anchor(node, op: str):
        """The nearest node reading a weight, walking back through weightless producers (breadth first)."""
        frontier, seen = [node], set()
        for _ in range(_WALK_DEPTH):
            found = [n for n in frontier if n.op_type in _WEIGHT_OPS and any(i in weights for i in n.input)]
            if found:
                return next((n for n in found if n.op_type == op), found[0])
            seen.update(id(n) for n in frontier)
            frontier = [producer[i] for n in frontier for i in n.input if i in producer and id(producer[i]) not in seen]
        return None

    for name, (op, micros) in node_latency.items():
        node = resolve(name)
        target = anchor(node, op) if node is not None else None
        if target is None:
            lost += micros
            continue
        weight = next(i for i in target.input if i in weights)
        own = op in _WEIGHT_OPS or op.startswith("Fused") or op == target.op_type
        entry = charged.setdefault(weight, [0.0, 0.0])
        entry[0 if own else 1] += micros
        axis_of[weight] = _output_axis(target)
    return {w: (v[0], v[1], axis_of[w]) for w, v in charged.items()}, lost


def unit_latency_costs(graph: Graph, result: CouplingResult, groups: list[int], example_inputs: tuple | None,
                       runs: int = 5, threads: int = 2) -> tuple[dict[int, np.ndarray], dict]:
    """Latency (microseconds) one unit of each group saves when removed, measured on ``graph`` (see the
    module docstring); also a summary (total, attributed and unattributed microseconds) for the report."""
    from ...backends.onnx import to_onnx

    _ort()
    model = to_onnx(graph, check=False)
    node_latency = profile_node_latency(model, example_feed(graph, example_inputs), runs, threads)
    charged, lost = weight_latency(model, node_latency)
    costs: dict[int, np.ndarray] = {}
    for gi in groups:
        group = result.groups[gi]
        cost = np.zeros(group.units)
        for m in group.members:
            if not m.values or m.key not in charged and m.values[0].name not in charged:
                continue
            own, downstream, out_axis = charged.get(m.values[0].name) or charged[m.key]
            shape = m.shape
            micros = own + (downstream if _is_output_axis(graph, m, out_axis) else 0.0)
            cost += np.bincount(m.unit_of, minlength=group.units) * (micros / max(shape[m.axis], 1))
        costs[gi] = cost
    total = sum(v for _, v in node_latency.values())
    summary = {"profiled_ms": round(total / 1e3, 3), "unattributed_ms": round(lost / 1e3, 3), "runs": runs}
    return costs, summary


def _is_output_axis(graph: Graph, member, onnx_axis: int) -> bool:
    """Whether ``member``'s axis is its weight's output axis: the ONNX axis of a Linear's weight is
    transposed when written as MatMul, so a graphpress Linear (weight [out, in]) counts axis 0."""
    consumers = member.values[0].consumers() if member.values else []
    if any(n.op == "Linear" for n in consumers):
        return member.axis == 0
    return member.axis == onnx_axis
