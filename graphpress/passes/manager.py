"""The pass manager: runs passes in order (optionally to a fixed point) and guards every step.

For each pass it checks preconditions, keeps a snapshot, runs it, verifies the IR, runs the example inputs
and compares outputs (an exact pass must not change them; a lossy pass has its error recorded), records
time, parameters and FLOPs, and invalidates cached analyses the pass does not preserve. If anything fails
the graph is restored to the snapshot and a :class:`PassError` names the pass, the passes before it, and
where the crash reproducer was written.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..analysis import count_flops, invalidate, layer_summary
from ..backends.evaluate import evaluate, is_meta_graph, relative_error
from ..errors import GraphpressError, InfeasibleRequestError, PassError
from ..ir import Graph, verify
from .base import Pass
from .context import PassContext
from .pipeline import format_pipeline
from .snapshot import Snapshot, snapshot_on_host, take_snapshot

__all__ = ["PassManager", "PassRecord", "PipelineReport"]

_EXACT_RTOL = {torch.float32: 1e-5, torch.float64: 1e-9, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@dataclass
class PassRecord:
    """One row of the per-pass log."""

    name: str
    text: str
    seconds: float
    modified: bool
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    error_vs_previous: float | None = None
    error_vs_original: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass
class PipelineReport:
    """The per-pass log plus per-layer facts before and after, for tables and the HTML report."""

    pipeline: str
    records: list[PassRecord] = field(default_factory=list)
    layers_before: list = field(default_factory=list)
    layers_after: list = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        rows = [f"{'pass':28} {'time s':>8} {'mod':>4} {'params':>14} {'MiB':>9} {'GFLOPs':>10} {'err/prev':>10}"]
        for r in self.records:
            err = "-" if r.error_vs_previous is None else f"{r.error_vs_previous:.2e}"
            rows.append(
                f"{r.text[:28]:28} {r.seconds:8.2f} {'yes' if r.modified else 'no':>4} "
                f"{r.params_after:14,d} {r.bytes_after / 2**20:9.1f} {r.flops_after / 1e9:10.3f} {err:>10}"
            )
        return "\n".join(rows)


def _restore(graph: Graph, snapshot: Graph) -> None:
    """Put ``snapshot``'s state into ``graph`` in place, so references to ``graph`` stay valid."""
    graph.__dict__.clear()
    graph.__dict__.update(snapshot.__dict__)
    for node in graph.nodes:
        node.graph = graph


def _retrace(graph: Graph, ctx: PassContext) -> Graph:
    """A fresh graph of ``graph.module`` after a pass restructured the module itself."""
    from ..frontends.torch_export import trace

    fresh = trace(graph.module, ctx.example_inputs or (), example_kwargs=ctx.example_kwargs, inplace=True)
    fresh.metadata = {**graph.metadata, **fresh.metadata}
    return fresh


# A rewrite that is exact in real arithmetic changes float32 outputs by summation order only.
_EXACT_IN_FLOAT32 = 1e-4


def _float32_change(graph: Graph, before: Snapshot | None, ctx: PassContext) -> float | None:
    """How much a pass changed the outputs with both models (before and after it) run in float32; None where
    that cannot be asked (no snapshot, not a half-precision torch model, or the float32 run failed, e.g. for
    memory).  Deep float16/bfloat16 models move by percents from rounding alone when a rewrite only reorders
    a sum (fusing q/k/v changes the GEMM's tiling), so the dtype's tolerance cannot tell exact from wrong."""
    from ..backends.evaluate import evaluate_in_float32

    if before is None or not _half_precision_torch(graph):
        return None
    try:
        after32 = evaluate_in_float32(graph, ctx.example_inputs, ctx.example_kwargs)
        before32 = evaluate_in_float32(before.materialize(), ctx.example_inputs, ctx.example_kwargs)
    except Exception:  # noqa: BLE001 - the check is a second opinion; without it the dtype's verdict stands
        return None
    return relative_error(after32, before32)


def _needs_snapshot(p: Pass, graph: Graph, ctx: PassContext) -> bool:
    """Whether to copy the graph before ``p``: to restore it, or, for a caller that restores the model itself,
    only where the copy has another use (the float32 judgement of an exact pass on a half-precision model, the
    crash reproducer's input), since a host copy of a large model costs seconds."""
    if not ctx.rollback:
        return False
    if ctx.restore_on_failure or ctx.repro_dir:
        return True
    return p.exact and ctx.check and _half_precision_torch(graph)


def _half_precision_torch(graph: Graph) -> bool:
    """A torch model in float16/bfloat16: where an exact pass may need the float32 second opinion."""
    return graph.origin == "torch" and _dominant_dtype(graph) in (torch.float16, torch.bfloat16)


def _dominant_dtype(graph: Graph) -> torch.dtype:
    for value in graph.parameters():
        if value.param is not None and value.param.dtype.is_floating_point:
            return value.param.dtype
    return torch.float32


#: Ops and the input slots at which they read a layer's weights (an ONNX initializer there must be finite).
_WEIGHT_SLOTS = {"Linear": (1, 2), "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
                 "Gather": (0,), "BatchNormalization": (1, 2, 3, 4), "LayerNormalization": (1, 2),
                 "InstanceNormalization": (1, 2), "GroupNormalization": (1, 2), "RMSNormalization": (1,)}


def _read_as_weight(value) -> bool:
    return any(slot in _WEIGHT_SLOTS.get(node.op, ()) for node, slot in value.uses)


def _refuse_non_finite_parameters(graph: Graph) -> None:
    """Refuse a model whose weights hold NaN or Inf, naming the first such tensor.

    Every importance score, quantization grid and numeric check downstream would be meaningless (NaN
    compares false, so a broken result could even pass a check). Only weights are checked: buffers may
    hold -inf on purpose (attention masks), and meta tensors have no values. An ONNX file does not say which
    initializers are weights: there Inf counts only in a tensor a layer reads as its weight, since exporters
    fold causal masks (-inf by design) into initializers too.
    """
    for value in graph.parameters():
        if value.param.kind != "parameter" or value.param.is_meta:
            continue
        tensor = value.param.data
        if not tensor.is_floating_point():
            continue
        if graph.origin == "onnx" and not torch.isnan(tensor).any() and not _read_as_weight(value):
            continue
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise GraphpressError(f"weight '{value.param.key}' holds {bad} NaN/Inf value(s) of {tensor.numel()}: "
                                  "graphpress refuses non-finite weights; fix or reload the checkpoint first")


class PassManager:
    """Run ``passes`` over a graph. ``fixed_point`` repeats the pipeline until no pass modifies the graph."""

    def __init__(self, passes: Sequence[Pass], *, fixed_point: bool = False, max_iterations: int = 8):
        self.passes = list(passes)
        self.fixed_point = fixed_point
        self.max_iterations = max_iterations

    @property
    def pipeline(self) -> str:
        return format_pipeline(self.passes)

    def run(self, graph: Graph, ctx: PassContext | None = None) -> PipelineReport:
        ctx = ctx or PassContext()
        # Passes may adapt to what follows them (a pruning pass keeps statistics for a recovery pass).
        ctx.extras["pipeline_passes"] = tuple(p.name for p in self.passes)
        _refuse_non_finite_parameters(graph)
        report = PipelineReport(self.pipeline, layers_before=layer_summary(graph))
        can_run = ctx.check and ctx.example_inputs is not None and not is_meta_graph(graph)
        on_host = ctx.rollback and snapshot_on_host(graph, ctx.snapshots)
        if on_host:
            ctx.log.append("rollback snapshots are kept in host memory (the model is large for its device)")
        original = evaluate(graph, ctx.example_inputs, ctx.example_kwargs) if can_run else None
        previous = original
        for _ in range(self.max_iterations if self.fixed_point else 1):
            any_modified = False
            for p in self.passes:
                if p.name in ctx.disabled:
                    continue
                record, previous = self._run_one(p, graph, ctx, report, previous, original, on_host)
                any_modified |= record.modified
            if not any_modified:
                break
        report.layers_after = layer_summary(graph)
        return report

    def _run_one(self, p: Pass, graph: Graph, ctx: PassContext, report: PipelineReport,
                 previous: list | None, original: list | None, on_host: bool = False
                 ) -> tuple[PassRecord, list | None]:
        ran_before = [r.text for r in report.records]
        snapshot = take_snapshot(graph, on_host) if _needs_snapshot(p, graph, ctx) else None
        params_before, flops_before = graph.parameter_count(), count_flops(graph)
        bytes_before = graph.parameter_bytes()
        start = time.perf_counter()
        try:
            p.requires(graph, ctx)
            result = p.call(graph, ctx)
            if p.retraces and result.modified and graph.origin == "torch":
                _restore(graph, _retrace(graph, ctx))
            verify(graph)
            p.ensures(graph, ctx)
            outputs = None
            if previous is not None and result.modified:
                outputs = evaluate(graph, ctx.example_inputs, ctx.example_kwargs)
                err = relative_error(outputs, previous)
                tol = ctx.exact_rtol or _EXACT_RTOL.get(_dominant_dtype(graph), 1e-5)
                if p.exact and not err <= tol:
                    err32 = _float32_change(graph, snapshot, ctx) if ctx.exact_rtol is None else None
                    if err32 is None or not err32 <= _EXACT_IN_FLOAT32:
                        in_float32 = f"; in float32 {err32:.3g}" if err32 is not None else ""
                        raise PassError(f"pass '{p.name}' claims to be exact but changed the outputs by "
                                        f"{err:.3g} (relative, tolerance {tol:g}{in_float32})")
                    result.stats["exactness"] = (f"{err:.2g} in {_dominant_dtype(graph)}, {err32:.1g} with the "
                                                 "model in float32: rounding, not the rewrite")
        except Exception as exc:  # noqa: BLE001 - every failure is rolled back and re-raised as PassError
            restored = snapshot is not None and ctx.restore_on_failure
            if restored:
                _restore(graph, snapshot.materialize())
            # The reproducer wants the pass's input: the snapshot as it stands (host tensors serve) if not restored.
            pass_input = snapshot.copy if snapshot is not None and not restored else graph
            repro = self._write_repro(pass_input, ctx, p, ran_before, exc)
            raise self._wrap(exc, p, ran_before, repro, restored) from exc
        seconds = time.perf_counter() - start
        if result.modified:
            invalidate(graph, p.preserves)
        record = PassRecord(
            name=p.name, text=p.pipeline_text(), seconds=seconds, modified=result.modified,
            params_before=params_before, params_after=graph.parameter_count(),
            flops_before=flops_before, flops_after=count_flops(graph), stats=dict(result.stats),
            bytes_before=bytes_before, bytes_after=graph.parameter_bytes(),
        )
        if outputs is not None:
            record.error_vs_previous = relative_error(outputs, previous)
            record.error_vs_original = relative_error(outputs, original)
            previous = outputs
        elif previous is not None:
            record.error_vs_previous = 0.0
            record.error_vs_original = relative_error(previous, original)
        report.records.append(record)
        ctx.log.append(f"{record.text}: {seconds:.2f}s, modified={record.modified}")
        return record, previous

    def _wrap(self, exc: Exception, p: Pass, ran_before: list[str], repro: str | None, rolled: bool) -> PassError:
        before = ", ".join(ran_before) if ran_before else "none"
        reason = str(exc) if isinstance(exc, GraphpressError) else f"{type(exc).__name__}: {exc}"
        lines = [f"pass '{p.pipeline_text()}' failed: {reason}", f"passes that ran before it: {before}"]
        if rolled:
            lines.append(f"the model was rolled back to its state before '{p.name}'")
        if repro:
            lines.append(f"a crash reproducer was written to {repro} (replay: graphpress replay {repro})")
        kind = InfeasibleRequestError if isinstance(exc, InfeasibleRequestError) else PassError
        return kind("\n".join(lines))

    def _write_repro(self, graph: Graph, ctx: PassContext, p: Pass, ran_before: list[str],
                     exc: Exception) -> str | None:
        if not ctx.repro_dir:
            return None
        from .repro import write_reproducer

        try:
            return write_reproducer(ctx.repro_dir, graph, p, ran_before, "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)))
        except Exception as write_error:  # noqa: BLE001 - a failing reproducer must not hide the real error
            ctx.log.append(f"could not write the crash reproducer: {write_error}")
            return None
