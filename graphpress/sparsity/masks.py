"""Sparsity patterns and the masks that realise them from per-weight importance scores.

Every method (magnitude, Wanda, SparseGPT) reduces to the same question: given a score per weight, which
weights stay? The answer depends only on the *pattern*: unstructured at a ratio (compared across the whole
layer or within each output row), or N:M (N nonzeros in every M consecutive inputs of a row, the layout
NVIDIA's sparse tensor cores run at 2:4). Keeping this in one place means every method obeys the pattern
exactly, which the tests check with :func:`satisfies`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import OptionError

__all__ = ["SparsityPattern", "parse_pattern", "keep_mask", "satisfies", "sparsity_of"]


@dataclass(frozen=True)
class SparsityPattern:
    """``n_of_m=(N, M)`` for N:M; otherwise unstructured at ``ratio`` (the fraction of weights set to zero)."""

    ratio: float
    n_of_m: tuple[int, int] | None = None

    @property
    def is_n_of_m(self) -> bool:
        return self.n_of_m is not None

    def with_ratio(self, ratio: float) -> "SparsityPattern":
        """The same kind of pattern at another ratio (layer-adaptive allocation); N:M has a fixed ratio."""
        if self.is_n_of_m:
            raise OptionError("N:M sparsity has a fixed ratio; layer-adaptive allocation needs an unstructured ratio")
        return SparsityPattern(ratio)

    def __str__(self) -> str:
        return f"{self.n_of_m[0]}:{self.n_of_m[1]}" if self.is_n_of_m else f"{self.ratio:.1%} unstructured"


def parse_pattern(ratio: float | None, pattern: str | None) -> SparsityPattern:
    """Build a pattern from the ``ratio`` / ``pattern`` options; exactly one of them must be given."""
    if (ratio is None) == (pattern is None):
        raise OptionError("sparsify needs exactly one of ratio=<0..1> (unstructured) or pattern=N:M (e.g. 2:4)")
    if pattern is None:
        if not 0.0 < ratio < 1.0:
            raise OptionError(f"sparsify: ratio must be in (0, 1), got {ratio}")
        return SparsityPattern(float(ratio))
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", pattern)
    if match is None:
        raise OptionError(f"sparsify: pattern must look like N:M (e.g. 2:4 or 4:8), got {pattern!r}")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise OptionError(f"sparsify: pattern {pattern} needs 0 < N < M (N weights kept in every M)")
    return SparsityPattern(1.0 - n / m, (n, m))


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the ``count`` lowest scores along the last axis (ties broken by position)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if count > 0:
        mask.scatter_(-1, torch.topk(scores, count, dim=-1, largest=False).indices, True)
    return mask


def keep_mask(scores: torch.Tensor, pattern: SparsityPattern, *, per_row: bool = True) -> torch.Tensor:
    """Boolean ``keep`` mask of a 2-D score matrix ``[out, in]`` (True = weight stays).

    Unstructured: prune ``round(ratio * numel)`` weights, compared within each row (``per_row``, Wanda's
    comparison group; rows differ by at most one) or across the whole matrix.
    N:M: in each row, each run of M consecutive inputs keeps its N highest scores.
    """
    rows, cols = scores.shape
    if pattern.is_n_of_m:
        n, m = pattern.n_of_m
        if cols % m:
            raise OptionError(f"an {n}:{m} pattern needs the input width to be a multiple of {m}; got {cols}")
        grouped = scores.reshape(rows, cols // m, m)
        return ~_lowest(grouped, m - n).reshape(rows, cols)
    if per_row:
        return ~_lowest_per_row(scores, round(pattern.ratio * scores.numel()))
    return ~_lowest(scores.reshape(1, -1), round(pattern.ratio * scores.numel())).reshape(rows, cols)


def _lowest_per_row(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Mask of ``count`` scores in all, spread over the rows as evenly as integers allow.

    Rounding each row separately would miss the layer's count by up to half a weight per row, which adds
    up on narrow layers; instead every row drops ``count // rows`` and the rows whose next candidate scores
    lowest drop one more.
    """
    rows, cols = scores.shape
    base, extra = divmod(count, rows)
    mask = _lowest(scores, base)
    if extra:
        next_lowest = scores.masked_fill(mask, float("inf")).min(dim=-1)
        chosen = torch.topk(next_lowest.values, extra, largest=False).indices
        mask[chosen, next_lowest.indices[chosen]] = True
    return mask


def sparsity_of(weight: torch.Tensor) -> float:
    """Fraction of exactly-zero entries."""
    return float((weight == 0).sum()) / max(weight.numel(), 1)


def satisfies(weight: torch.Tensor, pattern: SparsityPattern, *, per_row: bool = True) -> bool:
    """True if ``weight``'s zeros realise ``pattern``: at most N nonzeros per M-run, or the exact zero count."""
    rows, cols = weight.shape
    nonzero = weight != 0
    if pattern.is_n_of_m:
        n, m = pattern.n_of_m
        return cols % m == 0 and bool((nonzero.reshape(rows, cols // m, m).sum(-1) <= n).all())
    if per_row:
        zeros = (~nonzero).sum(-1)
        return bool((zeros >= round(pattern.ratio * weight.numel()) // rows).all()) and \
            int(zeros.sum()) >= round(pattern.ratio * weight.numel())
    return int((~nonzero).sum()) >= round(pattern.ratio * weight.numel())
