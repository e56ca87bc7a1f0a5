"""PNG charts for the reports (matplotlib, headless)."""

from __future__ import annotations

import os
from typing import Sequence

__all__ = ["line_per_pass", "bar_single"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _labels(names: Sequence[str], limit: int = 60) -> list[str]:
    return [n if len(n) <= 38 else "…" + n[-37:] for n in names[:limit]]


def bar_single(path: str, title: str, names: Sequence[str], values: Sequence[float], ylabel: str) -> str:
    plt = _pyplot()
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(8, min(30, 0.22 * n + 4)), 4.5))
    ax.bar(range(n), values, color="#5b8c5a")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if n <= 80:
        ax.set_xticks(list(range(n)))
        ax.set_xticklabels(_labels(list(names), n), rotation=90, fontsize=6)
    else:
        ax.set_xlabel(f"{n} layers, in graph order (names in the table below)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.path.basename(path)


def line_per_pass(path: str, title: str, passes: Sequence[str], series: dict[str, Sequence[float]]) -> str:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.8))
    axes = axes if len(series) > 1 else [axes]
    for ax, (name, values) in zip(axes, series.items()):
        ax.plot(range(len(values)), values, marker="o", color="#3a6ea5")
        ax.set_title(name)
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(["input"] + list(passes), rotation=45, ha="right", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.path.basename(path)
