"""Per-channel statistics of the inputs of linear layers, accumulated over calibration tokens.

Every data-aware compression method reads a few moments of the activations entering a linear layer
``y = x W^T``: Wanda and FLAP want the per-channel L2 norm and variance, AWQ the mean ``|x|``, SmoothQuant
the max ``|x|``, GPTQ and SparseGPT the Gram matrix ``X^T X``. :class:`LinearInputStats` keeps them all as
running sums in float64 (so 100k tokens of float32 activations add up without loss) and
:class:`LinearInputRecorder` fills them from forward hooks. Linears fed the very same tensor (q/k/v,
gate/up) share one accumulator, which halves the cost of the Gram matrices of a decoder block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
from torch import nn

__all__ = ["LinearInputStats", "LinearInputRecorder", "linear_modules"]


@dataclass
class LinearInputStats:
    """Running moments of the ``in_features`` channels of one linear layer's input."""

    in_features: int
    with_gram: bool = False
    tokens: int = 0
    sum: torch.Tensor = field(init=False)
    sum_squares: torch.Tensor = field(init=False)
    sum_abs: torch.Tensor = field(init=False)
    max_abs: torch.Tensor = field(init=False)
    gram: Optional[torch.Tensor] = field(init=False, default=None)

    def __post_init__(self) -> None:
        zeros = lambda: torch.zeros(self.in_features, dtype=torch.float64)  # noqa: E731
        self.sum, self.sum_squares, self.sum_abs, self.max_abs = zeros(), zeros(), zeros(), zeros()
        if self.with_gram:
            self.gram = torch.zeros(self.in_features, self.in_features, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        """Add the tokens of ``x`` ``[..., in_features]`` (any leading shape, any float dtype or device)."""
        rows = x.detach().reshape(-1, self.in_features).to(device="cpu", dtype=torch.float64)
        self.tokens += rows.shape[0]
        self.sum += rows.sum(0)
        self.sum_squares += rows.square().sum(0)
        magnitudes = rows.abs()
        self.sum_abs += magnitudes.sum(0)
        self.max_abs = torch.maximum(self.max_abs, magnitudes.amax(0))
        if self.gram is not None:
            self.gram += rows.T @ rows

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.tokens, 1)

    @property
    def variance(self) -> torch.Tensor:
        """Population variance over tokens, clamped at 0 against cancellation."""
        return (self.sum_squares / max(self.tokens, 1) - self.mean.square()).clamp_min(0.0)

    @property
    def l2_norm(self) -> torch.Tensor:
        """``||X_j||_2`` over all tokens (Wanda's activation norm)."""
        return self.sum_squares.sqrt()

    @property
    def mean_abs(self) -> torch.Tensor:
        return self.sum_abs / max(self.tokens, 1)

    def hessian(self) -> torch.Tensor:
        """``H = 2/n X^T X``, the Hessian of the layer-wise squared error used by GPTQ and SparseGPT."""
        if self.gram is None:
            raise ValueError("these statistics were collected without the Gram matrix (with_gram=False)")
        return self.gram * (2.0 / max(self.tokens, 1))


class LinearInputRecorder:
    """Forward hooks that feed the inputs of named ``nn.Linear`` modules into :class:`LinearInputStats`.

    Use as a context manager around forward passes; ``stats`` maps each module name to its statistics
    (aliases share one object when the modules read the same input tensor).
    """

    def __init__(self, linears: dict[str, nn.Linear], *, with_gram: bool = False) -> None:
        self.linears = linears
        self.with_gram = with_gram
        self.stats: dict[str, LinearInputStats] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # Inputs seen in the current forward call, to detect modules that share an input tensor.
        self._seen: list[tuple[torch.Tensor, str]] = []
        self._aliases: set[str] = set()

    def _hook(self, name: str):
        def record(module: nn.Module, args: tuple) -> None:
            x = args[0]
            if name not in self.stats:
                # Decided on the first batch: a module reading a tensor already recorded shares its stats.
                owner = next((seen_name for seen, seen_name in self._seen if seen is x), None)
                if owner is not None:
                    self.stats[name] = self.stats[owner]
                    self._aliases.add(name)
                else:
                    self.stats[name] = LinearInputStats(module.in_features, with_gram=self.with_gram)
            if name in self._aliases:
                return
            self._seen.append((x, name))
            self.stats[name].update(x)

        return record

    def new_batch(self) -> None:
        """Forget the tensors of the previous forward call (call before each batch)."""
        self._seen.clear()

    def __enter__(self) -> "LinearInputRecorder":
        for name, module in self.linears.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._seen.clear()


def linear_modules(root: nn.Module, prefix: str = "", types: Iterable[type] | None = None) -> dict[str, nn.Module]:
    """``{qualified name: module}`` of the linear layers under ``root``, names prefixed with ``prefix``;
    by default ``nn.Linear`` and fused sibling projections (``FusedLinear``: one input, one weight)."""
    from graphpress.backends.fused_linear import FusedLinear

    kinds = tuple(types) if types is not None else (nn.Linear, FusedLinear)
    return {
        (f"{prefix}.{name}" if prefix else name): module
        for name, module in root.named_modules()
        if isinstance(module, kinds)
    }

