"""``sparsify`` and ``lower-sparse24``: unstructured / N:M weight sparsity as pipeline passes.

``sparsify{ratio=0.5 | pattern=2:4, method=magnitude|wanda|sparsegpt, allocation=uniform|owl|lamp, ignore}``
zeroes weights of every ``graphpress::Linear``. On a torch model it runs :func:`graphpress.sparsity.
sparsify_model` on the working copy of the user's module (the IR's Linear weights are bound to it, so the
graph sees the zeros); on an ONNX model magnitude pruning (uniform or LAMP) edits the initializers. The
graph keeps dense tensors, so the ONNX backend writes the zeros as they are and the mask survives export;
:func:`graphpress.sparsity.save_sparse` writes the compact format.

``lower-sparse24{tokens}`` swaps qualifying 2:4 weights of a CUDA torch model for semi-structured sparse
tensors; on the CPU it changes nothing and says so.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from ..errors import PassError
from ..ir import GRAPHPRESS_DOMAIN, Graph
from ..sparsity import (
    SparsityPattern,
    lamp_ratios,
    magnitude_prune,
    parse_pattern,
    sparsify_model,
    sparsity_of,
    whole_weight_ratios,
)
from ..sparsity.lower24 import lower_sparse24
from .base import Pass, PassResult
from .context import PassContext
from .options import Option
from .registry import register_pass

__all__ = ["Sparsify", "LowerSparse24"]

_RATIO_TOLERANCE = 0.005  # the realised overall ratio must match the request this closely


def _ignored_onnx(scope: str, node_name: str, weight_name: str, patterns: list[str]) -> bool:
    """ONNX node names rarely carry the module path; the initializer name ("lm_head.weight") often does."""
    names = (scope, node_name, weight_name, weight_name.removesuffix(".weight"))
    return any(fnmatch.fnmatchcase(name, p) for name in names if name for p in patterns)


@register_pass
class Sparsify(Pass):
    name = "sparsify"
    summary = ("Zero Linear weights: unstructured ratio or N:M pattern, by magnitude, wanda or sparsegpt, "
               "with uniform, owl or lamp per-layer ratios.")
    options = (
        Option("ratio", "float", None, "fraction of weights to zero (unstructured)", low=0.0, high=1.0,
               low_inclusive=False, high_inclusive=False),
        Option("pattern", "str", None, "N:M pattern instead of a ratio: N weights kept in every M inputs (2:4, 4:8)"),
        Option("method", "str", "wanda", "importance", choices=("magnitude", "wanda", "sparsegpt")),
        Option("allocation", "str", "uniform", "per-layer ratios", choices=("uniform", "owl", "lamp")),
        Option("ignore", "list", ["lm_head"], "module-name globs to leave dense (| separated)"),
        Option("owl_lambda", "float", 0.08, "allocation=owl: largest shift of a block's ratio from the mean",
               low=0.0, high=0.5),
        Option("owl_threshold", "float", 5.0, "allocation=owl: an outlier is a Wanda score above this multiple of "
               "its block's mean", low=1.0),
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        o = self.opts
        self.pattern: SparsityPattern = parse_pattern(o["ratio"], o["pattern"])
        if o["allocation"] != "uniform":
            self.pattern.with_ratio(self.pattern.ratio)  # refuses N:M with an adaptive allocation

    def uses_calibration(self) -> bool:
        return self.opts["method"] != "magnitude" or self.opts["allocation"] == "owl"

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        super().requires(graph, ctx)
        o = self.opts
        data_aware = self.uses_calibration()
        if graph.origin != "torch" and data_aware:
            raise PassError(f"sparsify{{method={o['method']},allocation={o['allocation']}}} runs calibration "
                            "through a torch model; on an ONNX model use method=magnitude with allocation "
                            "uniform or lamp (or sparsify the torch model, then export)")
        if graph.origin == "torch" and data_aware and ctx.calibration is None:
            raise PassError(f"sparsify{{method={o['method']},allocation={o['allocation']}}} needs calibration "
                            "data: pass calibration=... (token windows, strings with a tokenizer, or model "
                            "inputs), or --calibration FILE")

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        o = self.opts
        if graph.origin == "torch":
            report = sparsify_model(graph.module, self.pattern, method=o["method"], allocation=o["allocation"],
                                    ignore=o["ignore"], calibration=ctx.calibration, tokenizer=ctx.tokenizer,
                                    owl_lambda=o["owl_lambda"], owl_threshold=o["owl_threshold"])
            layers, overall, skipped, seconds = (len(report.layer_ratios), report.overall_ratio,
                                                 len(report.skipped), round(report.seconds, 2))
            for name, why in report.skipped.items():
                ctx.log.append(f"sparsify: left {name} dense ({why})")
        else:
            layers, overall, skipped = self._call_onnx(graph)
            seconds = None
        self._realised = overall if layers else None
        stats = {"pattern": str(self.pattern), "method": o["method"], "allocation": o["allocation"],
                 "layers": layers, "overall_ratio": round(overall, 5), "skipped": skipped}
        if seconds is not None:
            stats["seconds"] = seconds
        return PassResult(graph, layers > 0, stats)

    def _call_onnx(self, graph: Graph) -> tuple[int, float, int]:
        """Magnitude pruning of the initializers of every Linear node: (layers, overall ratio, skipped)."""
        weights = {}
        skipped = 0
        for node in graph.nodes:
            if node.op != "Linear" or node.domain != GRAPHPRESS_DOMAIN:
                continue
            weight = node.input(1)
            if weight is None or weight.param is None or weight.param.is_meta:
                continue
            if _ignored_onnx(node.scope, node.name, weight.name, self.opts["ignore"]):
                continue
            width = weight.param.data.shape[1]
            if self.pattern.is_n_of_m and width % self.pattern.n_of_m[1]:
                skipped += 1
                continue
            weights[node.name] = weight
        ratios = {name: self.pattern.ratio for name in weights}
        if self.opts["allocation"] == "lamp" and weights:
            ratios = lamp_ratios({n: v.param.data.abs().float() for n, v in weights.items()}, self.pattern.ratio)
        ratios = whole_weight_ratios(ratios, {name: value.param.data.numel() for name, value in weights.items()})
        zeros = total = 0
        for name, value in weights.items():
            pattern = self.pattern if self.pattern.is_n_of_m else self.pattern.with_ratio(ratios[name])
            value.param.data = magnitude_prune(value.param.data, pattern).contiguous()
            value.sync_from_param()
            total += value.param.data.numel()
            zeros += round(sparsity_of(value.param.data) * value.param.data.numel())
        return len(weights), zeros / max(total, 1), skipped

    def ensures(self, graph: Graph, ctx: PassContext) -> None:
        realised = getattr(self, "_realised", None)
        if realised is not None and abs(realised - self.pattern.ratio) > _RATIO_TOLERANCE:
            raise PassError(f"sparsify: realised overall ratio {realised:.4f} is off the requested "
                            f"{self.pattern.ratio:.4f} by more than {_RATIO_TOLERANCE}; layers too narrow?")


@register_pass
class LowerSparse24(Pass):
    name = "lower-sparse24"
    summary = ("Run 2:4-sparse Linears on sparse tensor cores (CUDA, fp16/bf16) where the shape and tokens per "
               "call make it faster; a no-op on CPU.")
    origins = frozenset({"torch"})
    options = (
        Option("tokens", "int", 512, "expected tokens per forward call (batch x sequence); below 128 nothing "
               "is lowered, since the dense kernel wins", low=1),
        Option("ignore", "list", ["lm_head"], "module-name globs to leave dense (| separated)"),
    )

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        result = lower_sparse24(graph.module, tokens=self.opts["tokens"], ignore=self.opts["ignore"])
        if result.reason:
            ctx.log.append(f"lower-sparse24: {result.reason}")
        for name in result.lowered:
            ctx.log.append(f"lower-sparse24: lowered {name}")
        stats = {"lowered": len(result.lowered), "layers": list(result.lowered), "kept": len(result.kept)}
        if result.reason:
            stats["reason"] = result.reason
        return PassResult(graph, bool(result.lowered), stats)
