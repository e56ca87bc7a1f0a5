"""Options of weight quantization, validated in full before any layer is touched.

A bad option must fail at once with an :class:`~graphpress.errors.OptionError` that names the option and
its allowed range, never halfway through a model (leaving it half-quantized).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from graphpress.errors import OptionError
from graphpress.quantization.packing import SUPPORTED_BITS

__all__ = ["METHODS", "CALIBRATED_METHODS", "PER_CHANNEL", "QuantOptions"]

METHODS = ("rtn", "gptq", "awq", "awq-gptq", "hqq", "smoothquant")
CALIBRATED_METHODS = ("gptq", "awq", "awq-gptq", "smoothquant")
PER_CHANNEL = 0  # group value meaning one group spanning all input columns (-1 is accepted too)


@dataclass
class QuantOptions:
    """What to quantize and how. ``group=0`` (or -1) means per output channel."""

    bits: int = 4
    group: int = 128
    method: str = "rtn"
    sym: bool = False
    integer_zero: bool = True  # asymmetric grids: integer zero points (0.0 on the grid); False: float, exact min-offset
    act_order: bool = False
    ignore: tuple[str, ...] = ("lm_head",)
    targets: tuple[str, ...] = ("*",)  # globs on full module names to consider (quantize pass: the graph's Linears)
    damp: float = 0.01
    alpha: Optional[float] = None  # SmoothQuant migration strength; AWQ searches its own
    hqq_iterations: int = 20
    act_bits: Optional[int] = field(default=None)

    @property
    def per_channel(self) -> bool:
        return self.group <= 0

    def validate(self, *, has_calibration: bool) -> "QuantOptions":
        """Check every option; return self. Raises :class:`OptionError` naming the first bad one."""
        if self.method not in METHODS:
            raise OptionError(f"method={self.method!r}: choose one of {', '.join(METHODS)}")
        if self.bits not in SUPPORTED_BITS:
            raise OptionError(f"bits={self.bits}: must be one of {SUPPORTED_BITS}")
        if not isinstance(self.group, int) or not (self.group in (0, -1) or (self.group >= 8 and self.group % 4 == 0)):
            raise OptionError(f"group={self.group}: must be 0 or -1 (per channel) or a multiple of 4 that is >= 8")
        if self.act_order and self.method != "gptq":
            raise OptionError(f"act_order=True: only method=gptq reorders columns (got method={self.method})")
        if not 0.0 < self.damp <= 1.0:
            raise OptionError(f"damp={self.damp}: must lie in (0, 1]")
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise OptionError(f"alpha={self.alpha}: must lie in [0, 1]")
        if self.hqq_iterations < 1:
            raise OptionError(f"hqq_iterations={self.hqq_iterations}: must be >= 1")
        if self.act_bits not in (None, 8):
            raise OptionError(f"act_bits={self.act_bits}: only 8-bit activations (or None) are supported")
        if self.method in CALIBRATED_METHODS and not has_calibration:
            raise OptionError(f"method={self.method} needs calibration data (calibration=...)")
        if isinstance(self.ignore, str):
            self.ignore = (self.ignore,)
        if isinstance(self.targets, str):
            self.targets = (self.targets,)
        return self
