"""``report.html``: the per-pass log, per-layer width/sparsity/bits, parameters/FLOPs and errors per pass."""

from __future__ import annotations

import html
import os
from typing import Any, Iterable

from ..io import atomic_path
from . import charts

__all__ = ["write_pipeline_report", "write_groups_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:6px 0}
.summary td{font-size:15px}
"""


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _page(title: str, sections: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>")


def _fmt_err(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"


def write_pipeline_report(report: Any, directory: str | os.PathLike, *, title: str | None = None) -> str:
    """Write ``report.html`` and its PNG charts into ``directory`` (atomically); return the HTML path."""
    directory = os.fspath(directory)
    title = title or f"graphpress report: {report.pipeline}"
    with atomic_path(directory, directory=True) as tmp:
        sections = [_summary(report), _passes(report, tmp), _layers(report, tmp)]
        with open(os.path.join(tmp, "report.html"), "w") as f:
            f.write(_page(title, [s for s in sections if s]))
    return os.path.join(directory, "report.html")


def _summary(report: Any) -> str:
    rows = []
    if report.records:
        first, last = report.records[0], report.records[-1]
        rows.append(("parameters", f"{first.params_before:,}", f"{last.params_after:,}",
                     f"{last.params_after / max(1, first.params_before):.3f}x"))
        rows.append(("GFLOPs per example", f"{first.flops_before / 1e9:.3f}", f"{last.flops_after / 1e9:.3f}",
                     f"{last.flops_after / max(1, first.flops_before):.3f}x"))
    for name, (before, after) in report.evaluation.items():
        rows.append((name, f"{before:.4g}", f"{after:.4g}", f"{after / before:.3f}x" if before else "-"))
    pipeline = f"<p>pipeline: <code>{html.escape(report.pipeline)}</code></p>"
    return "<h2>Summary</h2>" + pipeline + _table(("", "before", "after", "ratio"), rows, "summary")


def _passes(report: Any, out: str) -> str:
    rows = [(r.text, f"{r.seconds:.2f}", "yes" if r.modified else "no", f"{r.params_after:,}",
             f"{r.flops_after / 1e9:.3f}", _fmt_err(r.error_vs_previous), _fmt_err(r.error_vs_original),
             ", ".join(f"{k}={v}" for k, v in r.stats.items() if not isinstance(v, (list, dict)))[:160])
            for r in report.records]
    table = _table(("pass", "time s", "modified", "params after", "GFLOPs after", "output error vs previous",
                    "vs original", "statistics"), rows)
    img = ""
    if report.records:
        names = [r.name for r in report.records]
        params = [report.records[0].params_before] + [r.params_after for r in report.records]
        flops = [report.records[0].flops_before / 1e9] + [r.flops_after / 1e9 for r in report.records]
        errors = [0.0] + [r.error_vs_original or 0.0 for r in report.records]
        png = charts.line_per_pass(os.path.join(out, "per_pass.png"), "after each pass", names,
                                   {"parameters": params, "GFLOPs": flops, "output error vs original": errors})
        img = f'<img src="{png}" alt="parameters, FLOPs and error per pass">'
    return "<h2>Passes</h2>" + table + img


def _layers(report: Any, out: str) -> str:
    before = {row.scope: row for row in report.layers_before}
    after = {row.scope: row for row in report.layers_after}
    scopes = list(before) + [s for s in after if s not in before]
    if not scopes:
        return ""
    rows, names, w0, w1, sparsity, bits = [], [], [], [], [], []
    for scope in scopes:
        b, a = before.get(scope), after.get(scope)
        names.append(scope)
        w0.append(b.out_features if b else 0)
        w1.append(a.out_features if a else 0)
        sparsity.append(100 * a.sparsity if a else 0)
        bits.append(a.bits if a else 0)
        rows.append((scope, a.op if a else "removed", f"{b.in_features}x{b.out_features}" if b else "-",
                     f"{a.in_features}x{a.out_features}" if a else "removed",
                     f"{(a.params if a else 0) / max(1, b.params if b else 1):.3f}",
                     f"{100 * a.sparsity:.1f}%" if a else "-", a.bits if a else "-"))
    imgs = [charts.bar_before_after(os.path.join(out, "widths.png"), "output width per layer", names, w0, w1,
                                    "out features / channels")]
    if any(sparsity):
        imgs.append(charts.bar_single(os.path.join(out, "sparsity.png"), "sparsity per layer", names, sparsity,
                                      "% zero weights"))
    if len(set(bits)) > 1 or (bits and bits[0] not in (16, 32)):
        imgs.append(charts.bar_single(os.path.join(out, "bits.png"), "weight bits per layer", names, bits, "bits"))
    pictures = "".join(f'<img src="{p}" alt="{p}">' for p in imgs)
    return "<h2>Layers</h2>" + pictures + _table(
        ("layer", "op after", "in x out before", "in x out after", "kept params", "sparsity", "bits"), rows)


def write_groups_report(graph: Any, groups: Any, directory: str | os.PathLike) -> str:
    """Write an HTML page of the coupling groups (members, sizes, constraints) with a size chart."""
    from ..analysis.coupling import groups_as_dicts  # type: ignore[attr-defined]

    directory = os.fspath(directory)
    items = groups_as_dicts(groups)
    with atomic_path(directory, directory=True) as tmp:
        names = [str(g.get("name", i)) for i, g in enumerate(items)]
        sizes = [float(g.get("size", 0)) for g in items]
        png = charts.bar_single(os.path.join(tmp, "groups.png"), "prunable channels per coupling group", names,
                                sizes, "channels")
        rows = [(g.get("name", i), g.get("size", ""), len(g.get("members", [])),
                 "; ".join(map(str, g.get("members", [])))[:400], "; ".join(map(str, g.get("constraints", []))))
                for i, g in enumerate(items)]
        body = [f"<h2>{len(items)} coupling groups in {html.escape(graph.name)}</h2>",
                f'<img src="{png}" alt="group sizes">',
                _table(("group", "channels", "members", "coupled parameters (key:axis)", "constraints"), rows)]
        with open(os.path.join(tmp, "report.html"), "w") as f:
            f.write(_page(f"graphpress coupling groups: {graph.name}", body))
    return os.path.join(directory, "report.html")
