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
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:6px 0}
code,td:first-child{overflow-wrap:anywhere}td:first-child{max-width:420px}
.summary td{font-size:15px}.groups td:nth-child(6),.groups td:last-child{text-align:left;white-space:pre-line;font-size:12px}
.passes td:last-child,.passes th:last-child{text-align:left;white-space:pre-line;font-size:12px;min-width:260px}
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
    title = title or "graphpress report"
    with atomic_path(directory, directory=True) as tmp:
        sections = [_summary(report), _passes(report, tmp), _layers(report, tmp)]
        with open(os.path.join(tmp, "report.html"), "w") as f:
            f.write(_page(title, [s for s in sections if s]))
    return os.path.join(directory, "report.html")


def _summary(report: Any) -> str:
    rows = []
    if report.records:
        first, last = report.records[0], report.records[-1]
        rows.append(("stored parameter elements", f"{first.params_before:,}", f"{last.params_after:,}",
                     f"{last.params_after / max(1, first.params_before):.3f}x"))
        if first.bytes_before:
            rows.append(("parameter memory, MiB", f"{first.bytes_before / 2**20:.1f}",
                         f"{last.bytes_after / 2**20:.1f}", f"{last.bytes_after / first.bytes_before:.3f}x"))
        rows.append(("GFLOPs per example", f"{first.flops_before / 1e9:.3f}", f"{last.flops_after / 1e9:.3f}",
                     f"{last.flops_after / max(1, first.flops_before):.3f}x"))
    for name, (before, after) in report.evaluation.items():
        rows.append((name, f"{before:.4g}", f"{after:.4g}", f"{after / before:.3f}x" if before else "-"))
    pipeline = f"<p>pipeline: <code>{html.escape(report.pipeline)}</code></p>"
    note = ("<p>Packed low-bit weights count as the elements they are stored in (two int4 codes per byte), so "
            "quantization lowers both rows; memory is the figure to compare.</p>")
    return "<h2>Summary</h2>" + pipeline + _table(("", "before", "after", "ratio"), rows, "summary") + note


def _statistics(stats: dict[str, Any]) -> str:
    """One ``key=value`` per line; lists and dicts are summarised by their length."""
    lines = []
    for key, value in stats.items():
        if isinstance(value, (list, tuple, dict)):
            value = f"{len(value)} entries"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"{key}={value}")
    return "\n".join(lines)


def _passes(report: Any, out: str) -> str:
    rows = [(r.text, f"{r.seconds:.2f}", "yes" if r.modified else "no", f"{r.params_after:,}",
             f"{r.bytes_after / 2**20:.1f}", f"{r.flops_after / 1e9:.3f}", _fmt_err(r.error_vs_previous),
             _fmt_err(r.error_vs_original), _statistics(r.stats))
            for r in report.records]
    table = _table(("pass", "time s", "modified", "params after", "MiB after", "GFLOPs after",
                    "output error vs previous", "vs original", "statistics"), rows, "passes")
    img = ""
    if report.records:
        names = [r.name for r in report.records]
        memory = [report.records[0].bytes_before / 2**20] + [r.bytes_after / 2**20 for r in report.records]
        flops = [report.records[0].flops_before / 1e9] + [r.flops_after / 1e9 for r in report.records]
        errors = [0.0] + [r.error_vs_original or 0.0 for r in report.records]
        png = charts.line_per_pass(os.path.join(out, "per_pass.png"), "after each pass", names,
                                   {"parameter memory, MiB": memory, "GFLOPs": flops,
                                    "output error vs original": errors})
        img = f'<img src="{png}" alt="parameter memory, FLOPs and error per pass">'
    return "<h2>Passes</h2>" + table + img


def _layers(report: Any, out: str) -> str:
    before = {row.scope: row for row in report.layers_before}
    after = {row.scope: row for row in report.layers_after}
    scopes = list(before) + [s for s in after if s not in before]
    if not scopes:
        return ""
    rows, names, kept, sparsity, sparsity_before, bits = [], [], [], [], [], []
    for scope in scopes:
        b, a = before.get(scope), after.get(scope)
        names.append(scope)
        kept.append((a.params if a else 0) / max(1, b.params) if b else 1.0)
        sparsity.append(100 * a.sparsity if a else 0)
        sparsity_before.append(100 * b.sparsity if b else 0)
        bits.append(a.bits if a else 0)
        rows.append((scope, a.op if a else "removed", f"{b.in_features}x{b.out_features}" if b else "-",
                     f"{a.in_features}x{a.out_features}" if a else "removed",
                     f"{(a.params if a else 0) / max(1, b.params if b else 1):.3f}",
                     f"{100 * a.sparsity:.1f}%" if a else "-", a.bits if a else "-"))
    imgs = []
    if any(k != 1.0 for k in kept):
        imgs.append(charts.bar_single(os.path.join(out, "kept.png"), "parameters kept per layer (after / before)",
                                      names, kept, "kept fraction"))
    if any(a > b + 0.5 for a, b in zip(sparsity, sparsity_before)):  # only when a pass made zeros
        imgs.append(charts.bar_single(os.path.join(out, "sparsity.png"), "sparsity per layer", names, sparsity,
                                      "% zero weights"))
    if len(set(bits)) > 1 or (bits and bits[0] not in (16, 32)):
        imgs.append(charts.bar_single(os.path.join(out, "bits.png"), "weight bits per layer", names, bits, "bits"))
    pictures = "".join(f'<img src="{p}" alt="{p}">' for p in imgs)
    return "<h2>Layers</h2>" + pictures + _table(
        ("layer", "op after", "in x out before", "in x out after", "kept params", "sparsity", "bits"), rows)


def _constraints(group: dict[str, Any]) -> str:
    """What a group may never lose, in words: frozen units (grouped by reason), keep-one sets, notes."""
    by_reason: dict[str, int] = {}
    for why in group["frozen_reasons"].values():
        by_reason[why] = by_reason.get(why, 0) + 1
    parts = [f"{count} unit(s) frozen: {why}" for why, count in by_reason.items()]
    parts += [f"keep at least one of units {units[:8]}{' ...' if len(units) > 8 else ''}"
              for units in group["keep_at_least_one_of"][:4]]
    return "\n".join(parts + list(group["notes"]))


def write_groups_report(graph: Any, groups: Any, directory: str | os.PathLike) -> str:
    """Write an HTML page of the coupling groups (members, sizes, constraints) with a size chart."""
    from ..analysis.coupling import groups_as_dicts

    directory = os.fspath(directory)
    items = groups_as_dicts(groups)
    with atomic_path(directory, directory=True) as tmp:
        png = charts.bar_single(os.path.join(tmp, "groups.png"), "parameters per coupling group",
                                [g["name"] for g in items], [g["parameters"] for g in items], "parameters")
        rows = [(g["name"], g["units"], g["prunable_units"], g["unit_size"], f"{g['parameters']:,}",
                 "\n".join(f"{m['key']}[{m['axis']}]" for m in g["members"]), _constraints(g))
                for g in items]
        body = [f"<h2>{len(items)} coupling groups in {html.escape(graph.name)}</h2>",
                "<p>A group is a set of parameter axes that must shrink together: removing unit <i>u</i> removes "
                "the matching slice of every member.</p>",
                f'<img src="{png}" alt="parameters per group">',
                _table(("group", "units", "prunable", "unit size", "parameters", "members (key[axis])",
                        "constraints"), rows, "groups")]
        with open(os.path.join(tmp, "report.html"), "w") as f:
            f.write(_page(f"graphpress coupling groups: {graph.name}", body))
    return os.path.join(directory, "report.html")
