"""The HTML reports: what a user opens after ``--report DIR`` must show the run, with charts that exist."""

from __future__ import annotations

import re
from pathlib import Path

import graphpress
from graphpress.analysis.coupling import analyze_coupling
from graphpress.report import write_groups_report, write_pipeline_report
from graphpress.testing import tiny_case

_PNG = b"\x89PNG\r\n\x1a\n"


def _images(page: str, folder: Path) -> list[Path]:
    found = [folder / name for name in re.findall(r'<img src="([^"]+)"', page)]
    assert found, "the report has no chart"
    for path in found:
        assert path.read_bytes()[:8] == _PNG, f"{path.name} is not a PNG"
    return found


def test_pipeline_report_shows_passes_layers_memory_and_charts(tmp_path: Path) -> None:
    case = tiny_case("llama")
    _, report = graphpress.optimize(case.model, "prune-channels{ratio=0.3,importance=l2},quantize{bits=4,group=16}",
                                    example_kwargs=case.inputs, return_report=True)
    report.evaluation["perplexity"] = (10.0, 11.5)
    page_path = Path(write_pipeline_report(report, tmp_path / "report", title="graphpress report: tiny llama"))
    page = page_path.read_text()

    for heading in ("Summary", "Passes", "Layers"):
        assert f"<h2>{heading}</h2>" in page
    assert "prune-channels{ratio=0.3,importance=l2}" in page and "quantize{bits=4,group=16}" in page
    assert "parameter memory, MiB" in page and "1.150x" in page  # the evaluation row and its ratio
    names = {p.name for p in _images(page, page_path.parent)}
    assert {"per_pass.png", "kept.png", "bits.png"} <= names
    assert "sparsity.png" not in names, "no pass made zeros, so no sparsity chart"
    first, last = report.records[0], report.records[-1]
    assert last.bytes_after < 0.5 * first.bytes_before  # pruned, then 4-bit codes
    assert page.count("<tr>") >= len(report.layers_before)  # one table row per layer


def test_groups_report_lists_every_group(tmp_path: Path) -> None:
    case = tiny_case("llama")
    graph = graphpress.trace(case.model, case.inputs)
    groups = analyze_coupling(graph)
    page_path = Path(write_groups_report(graph, groups, tmp_path / "groups"))
    page = page_path.read_text()
    _images(page, page_path.parent)
    assert f"{len(groups.groups)} coupling groups" in page
    assert "q_proj.weight[0]" in page and "o_proj.weight[1]" in page  # members, with their axes
    assert "unit(s) frozen: positions picked by Gather" in page  # the embedding rows, grouped by reason
    assert "GQA ratio kept" in page
