"""Where the output error of ``quantize{bits=8,group=0}`` on one vision zoo model comes from.

The vision zoo sweep checks that W8 weight-only RTN keeps a model's first output within 3% of the original's.
When a model misses that, this script tells a quantizer defect apart from the model's own sensitivity:

1. graphpress's quantized model against an independent per-output-channel int8 fake-quant of the same linears
   (written here, not graphpress's grid code): their weights and outputs must agree;
2. attribution: each linear quantized alone, and each kind of linear (its name with block indices blanked out)
   alone; a defect shows as one layer or one kind far above the rest;
3. controls: Gaussian noise of the rounding error's per-row RMS in place of rounding (a model that amplifies
   any weight noise errs as much), and the bit width swept (a smooth sensitivity scales with the grid step);
4. how far each residual block is from the identity at this initialization (``||block(x) - x|| / ||x||``): random
   blocks far from it pass every layer's error on with gain, blocks near it (small or zero-initialized branch
   outputs) barely pass it on.

    PYTHONPATH=. python benchmarks/quant_error_attribution.py tv_swin_v2_t [--seed 0] [--top 10]

Needs torchvision and timm, like ``vision_zoo_sweep.py``; prints a markdown section.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

QUANT = "quantize{bits=8,group=0}"
BLOCKS = r"(features\.\d+\.\d+|(layers|stages)\.\d+\.blocks\.\d+|blocks\.\d+)$"
WeightMap = Callable[[torch.Tensor], torch.Tensor]


def fake_quantize_rows(weight: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Asymmetric round-to-nearest per output row with an integer zero point (0.0 on the grid), written
    independently of graphpress's grid code so that it can check it."""
    w = weight.detach().float()
    top = 2**bits - 1
    low, high = w.amin(1, keepdim=True).clamp(max=0), w.amax(1, keepdim=True).clamp(min=0)
    scale = (high - low) / top
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-low / scale)
    return (torch.clamp(torch.round(w / scale + zero), 0, top) - zero) * scale


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """The sweep's measure: max absolute error over the max absolute reference value."""
    return float((got - want).abs().max() / want.abs().max())


def kind(name: str) -> str:
    """A linear's name with its block indices blanked out (``features.3.1.mlp.0`` -> ``features.mlp.0``)."""
    return re.sub(r"\d+\.", "", name)


class Probe:
    """One model and input; runs it with some linears' weights replaced and restores them afterwards."""

    def __init__(self, model: nn.Module, inputs: tuple, names: list[str]) -> None:
        self.model, self.inputs, self.names = model, inputs, names
        modules = dict(model.named_modules())
        self.linears = {name: modules[name] for name in names}
        self.weights = {name: modules[name].weight.detach().clone() for name in names}
        with torch.no_grad():
            self.reference = model(*inputs)

    def error(self, names: list[str], weight_map: WeightMap = fake_quantize_rows) -> float:
        """Relative error of the output with ``weight_map`` applied to the weights of ``names``."""
        with torch.no_grad():
            for name in names:
                self.linears[name].weight.copy_(weight_map(self.weights[name]))
            try:
                return relative(self.model(*self.inputs), self.reference)
            finally:
                for name in names:
                    self.linears[name].weight.copy_(self.weights[name])


def gaussian_like_rounding(seed: int) -> WeightMap:
    """Weight + Gaussian noise with the per-row RMS of the W8 rounding error (same size, no rounding)."""
    generator = torch.Generator().manual_seed(seed)

    def perturb(weight: torch.Tensor) -> torch.Tensor:
        rms = (fake_quantize_rows(weight) - weight).pow(2).mean(1, keepdim=True).sqrt()
        return weight + torch.randn(weight.shape, generator=generator) * rms

    return perturb


def block_updates(model: nn.Module, inputs: tuple) -> list[tuple[str, float]]:
    """``||block(x) - x|| / ||x||`` of every residual block (names matching ``BLOCKS``, shape kept)."""
    found: list[tuple[str, float]] = []

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if torch.is_tensor(out) and args and out.shape == args[0].shape:
                found.append((name, float((out - args[0]).norm() / args[0].norm())))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if re.search(BLOCKS, n)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found


def graphpress_check(quantized: nn.Module, probe: Probe) -> list[str]:
    """Section 1: graphpress's quantized model against the independent fake-quant of the same linears."""
    modules = dict(quantized.named_modules())
    weight_gap = max(float((modules[n].dequantized_weight().float() - fake_quantize_rows(probe.weights[n]))
                           .abs().max()) for n in probe.names)
    with torch.no_grad():
        ours = relative(quantized(*probe.inputs), probe.reference)
    return [f"- graphpress `{QUANT}`: {len(probe.names)} linears, relative error {ours:.2e}",
            f"- independent fake-quant of the same linears: {probe.error(probe.names):.2e}; "
            f"largest weight difference from graphpress's dequantized weights: {weight_gap:.1e}"]


def attribution(probe: Probe, top: int) -> list[str]:
    """Section 2: each linear alone (the ``top`` largest) and each kind of linear alone."""
    singles = sorted(((probe.error([n]), n) for n in probe.names), reverse=True)
    lines = [f"- each linear alone, largest {top} (median {singles[len(singles) // 2][0]:.1e}, "
             f"sum of all {sum(e for e, _ in singles):.1e}): "
             + ", ".join(f"`{n}` {e:.1e}" for e, n in singles[:top])]
    kinds = sorted({kind(n) for n in probe.names})
    parts = []
    for k in kinds:
        members = [n for n in probe.names if kind(n) == k]
        parts.append(f"`{k}` ({len(members)}) {probe.error(members):.1e}")
    return lines + ["- each kind alone: " + ", ".join(parts)]


def controls(probe: Probe, seeds: int) -> list[str]:
    """Section 3: Gaussian noise of the rounding error's size, and RTN at other bit widths."""
    noise = [probe.error(probe.names, gaussian_like_rounding(s)) for s in range(seeds)]
    widths = {bits: probe.error(probe.names, lambda w, b=bits: fake_quantize_rows(w, b)) for bits in (6, 8, 10, 12)}
    return ["- Gaussian noise of the W8 rounding error's per-row RMS instead of rounding, "
            f"{seeds} seeds: " + ", ".join(f"{e:.1e}" for e in noise),
            "- RTN per channel at other widths: " + ", ".join(f"W{b} {e:.1e}" for b, e in widths.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a graphpress.testing.vision_zoo model name, e.g. tv_swin_v2_t")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (the sweep uses 0)")
    parser.add_argument("--top", type=int, default=8, help="single linears listed")
    parser.add_argument("--noise-seeds", type=int, default=4, help="Gaussian-noise controls")
    args = parser.parse_args()
    import graphpress
    from graphpress.quantization import QuantizedLinear
    from graphpress.testing.vision_zoo import vision_case
    from graphpress.testing.zoo_checks import optimize_kwargs

    torch.set_num_threads(1)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    case = vision_case(args.name, seed=args.seed)
    # The linears graphpress quantizes (those its graph computes as a Linear), so the figures are about them.
    quantized = graphpress.optimize(case.model, QUANT, **optimize_kwargs(case))
    names = [n for n, m in quantized.named_modules() if isinstance(m, QuantizedLinear)]
    probe = Probe(case.model, tuple(case.inputs), names)
    updates = block_updates(case.model, tuple(case.inputs))
    lines = [f"### {args.name} (seed {args.seed})", ""]
    lines += graphpress_check(quantized, probe) + attribution(probe, args.top) + controls(probe, args.noise_seeds)
    lines.append("- residual blocks, ||block(x) - x|| / ||x||: " + " ".join(f"{u:.2f}" for _, u in updates))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
