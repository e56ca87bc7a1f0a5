"""``quantize_model``: quantize a model's linear layers in place with RTN, HQQ, GPTQ, AWQ or SmoothQuant.

This is the one entry point the ``quantize`` pass wraps. Options are validated before any work. The
calibration-free methods (RTN, HQQ) go linear by linear. The calibrated ones walk the model block by block
(:func:`graphpress.calibration.run_blockwise`), so each block is quantized on activations that already went
through the quantized blocks before it; selected linears outside the repeated blocks (rare: a pooler, an
untied head), or whose forward never ran (model code calling ``F.linear`` on their weight itself), fall back
to RTN and are listed as such in the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from graphpress.calibration import BlockContext, run_blockwise
from graphpress.quantization.awq import awq_clip_quantize, search_awq_scales
from graphpress.quantization.gptq import gptq_quantize
from graphpress.quantization.grid import QuantizedWeight
from graphpress.quantization.hqq import hqq_quantize
from graphpress.quantization.module import QuantizedLinear
from graphpress.quantization.options import QuantOptions
from graphpress.quantization.scaling import exact_pairs, fold_scales, scaling_pairs
from graphpress.quantization.smoothquant import DEFAULT_ALPHA, smooth_pair
from graphpress.quantization.swap import attach_quantization_config, select_linears, set_module

__all__ = ["QuantizationReport", "quantize_model"]


@dataclass
class QuantizationReport:
    """What ``quantize_model`` did: settings, layers, bytes of the quantized linears, and wall time."""

    method: str
    bits: int
    group: int
    sym: bool
    layers: list[str] = field(default_factory=list)
    fallback_rtn: list[str] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        """Bytes of the quantized linears' state (codes, scales, zeros, bias) over their fp32/original bytes."""
        return self.bytes_after / max(self.bytes_before, 1)


def _tensor_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


class _Quantizer:
    """Replaces selected linears one by one and keeps the report's books."""

    def __init__(self, model: nn.Module, options: QuantOptions, report: QuantizationReport) -> None:
        self.model, self.options, self.report = model, options, report
        self.selected = select_linears(model, options.ignore, options.targets)
        self.input_scales: dict[int, torch.Tensor] = {}  # id(stats) -> scales folded into that input

    def replace(self, name: str, quantized: QuantizedWeight) -> None:
        linear = self.selected.pop(name)
        module = QuantizedLinear.from_weight(quantized, linear.bias, self.options.act_bits,
                                             split_sizes=getattr(linear, "split_sizes", None))
        module.compute_dtype = linear.weight.dtype
        self.report.bytes_before += _tensor_bytes(linear)
        self.report.bytes_after += _tensor_bytes(module)
        self.report.layers.append(name)
        set_module(self.model, name, module)

    def calibration_free(self, name: str, linear: nn.Linear) -> QuantizedWeight:
        o = self.options
        if o.method == "hqq":
            return hqq_quantize(linear.weight.detach(), o.bits, o.group, o.sym, iterations=o.hqq_iterations)
        return QuantizedWeight.round_to_nearest(linear.weight.detach(), o.bits, o.group, o.sym,
                                                integer_zero=o.integer_zero)

    def quantize_block(self, context: BlockContext) -> None:
        o = self.options
        # A linear whose forward never ran has no statistics (model code that reads its weight and calls
        # F.linear itself, an expert no token reached): it stays selected and falls back to RTN at the end.
        names = [name for name in context.linears if name in self.selected and name in context.stats]
        if not names:
            return
        self.input_scales = {}  # keyed by id(stats): valid only while this block's stats are alive
        if o.method in ("awq", "awq-gptq", "smoothquant"):
            self._scale_block(context)
        done: set[str] = set()
        for name in names:
            if name in done:
                continue
            stats = context.stats[name]
            # Linears reading one input share stats (and a Hessian): quantize them as one stacked matrix.
            siblings = [other for other in names if context.stats[other] is stats and other not in done]
            weight = torch.cat([self.selected[s].weight.detach().float() for s in siblings])
            if o.method == "gptq":
                quantized = gptq_quantize(weight, stats.hessian(), o.bits, o.group, o.sym, damp=o.damp,
                                          act_order=o.act_order, integer_zero=o.integer_zero)
            elif o.method == "awq-gptq":  # AWQ's scales chosen first, then GPTQ's error-compensating rounding
                hessian = self._scaled_gram(context, name) * (2.0 / max(stats.tokens, 1))
                quantized = gptq_quantize(weight, hessian, o.bits, o.group, o.sym, damp=o.damp,
                                          act_order=o.act_order, integer_zero=o.integer_zero)
            elif o.method == "awq":
                gram = self._scaled_gram(context, name)
                quantized = awq_clip_quantize(weight, gram, o.bits, o.group, o.sym, integer_zero=o.integer_zero)
            else:
                quantized = QuantizedWeight.round_to_nearest(weight, o.bits, o.group, o.sym,
                                                             integer_zero=o.integer_zero)
            start = 0
            for sibling in siblings:
                rows = self.selected[sibling].out_features
                self.replace(sibling, _row_slice(quantized, start, start + rows))
                start += rows
                done.add(sibling)

    def _scale_block(self, context: BlockContext) -> None:
        o = self.options
        # Only folds proven exact on this block's calibration inputs (the first batch suffices).
        first = BlockContext(context.index, context.name, context.block, {}, context.inputs[:1], context.calls[:1])
        for pair in exact_pairs(context.block, scaling_pairs(context.block), first.run):
            consumers = [f"{context.name}.{c}" for c in pair.consumers]
            if not all(c in self.selected and c in context.stats for c in consumers):
                continue
            stats = context.stats[consumers[0]]
            if o.method in ("awq", "awq-gptq"):
                alpha, scales = search_awq_scales(context.block, pair, stats.mean_abs, stats.gram, o.bits, o.group, o.sym,
                                                  integer_zero=o.integer_zero)
                fold_scales(context.block, pair, scales)
                self.report.details.setdefault("awq_alpha", {})[consumers[0]] = alpha
            else:
                scales = smooth_pair(context.block, pair, stats.max_abs, o.alpha if o.alpha is not None else DEFAULT_ALPHA)
            self.input_scales[id(stats)] = scales.double()

    def _scaled_gram(self, context: BlockContext, name: str) -> torch.Tensor:
        # After folding, the linear's input is X / s, so its Gram matrix is G / (s s^T).
        stats = context.stats[name]
        scales = self.input_scales.get(id(stats))
        gram = stats.gram
        if scales is None:
            return gram
        scales = scales.to(device=gram.device, dtype=gram.dtype)
        return gram / torch.outer(scales, scales)


def _row_slice(quantized: QuantizedWeight, start: int, end: int) -> QuantizedWeight:
    return QuantizedWeight(quantized.qweight[start:end].clone(), quantized.scales[start:end].clone(),
                           quantized.zeros[start:end].clone(), quantized.bits, quantized.group, quantized.in_features)


def quantize_model(
    model: nn.Module,
    *,
    bits: int = 4,
    group: int = 128,
    method: str = "rtn",
    sym: bool = False,
    act_order: bool = False,
    ignore: Iterable[str] = ("lm_head",),
    calibration: Optional[Any] = None,
    tokenizer: Optional[Any] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    **method_options: Any,
) -> QuantizationReport:
    """Quantize ``model``'s ``nn.Linear`` layers in place; return a :class:`QuantizationReport`.

    ``group=0`` (or -1) quantizes per output channel. ``calibration`` (token windows, strings with
    ``tokenizer``, or input dicts) is required by gptq, awq and smoothquant. ``method_options``: ``damp``
    (gptq), ``alpha`` (smoothquant), ``hqq_iterations``, ``act_bits`` (defaults to 8 for smoothquant).
    """
    if method == "smoothquant":
        method_options.setdefault("act_bits", 8)
    options = QuantOptions(bits=bits, group=group, method=method, sym=sym, act_order=act_order,
                           ignore=tuple(ignore), **method_options).validate(has_calibration=calibration is not None)
    report = QuantizationReport(method, bits, group, sym)
    started = time.perf_counter()
    quantizer = _Quantizer(model, options, report)
    with torch.no_grad():
        if method in ("rtn", "hqq"):
            names = list(quantizer.selected)
            for index, name in enumerate(names):
                quantizer.replace(name, quantizer.calibration_free(name, quantizer.selected[name]))
                if progress is not None:
                    progress(index + 1, len(names))
        else:
            run_blockwise(model, calibration, tokenizer=tokenizer, callback=quantizer.quantize_block,
                          with_gram=method in ("gptq", "awq", "awq-gptq"), keep_stats=False, progress=progress)
            for name in list(quantizer.selected):
                report.fallback_rtn.append(name)
                quantizer.replace(name, QuantizedWeight.round_to_nearest(
                    quantizer.selected[name].weight.detach(), bits, group, sym, integer_zero=options.integer_zero))
    attach_quantization_config(model)
    report.seconds = time.perf_counter() - started
    return report
