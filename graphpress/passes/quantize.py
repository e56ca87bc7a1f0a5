"""``quantize``: weight-only (and W8A8) post-training quantization of every Linear, on torch and ONNX models.

On a torch model the algorithms of :mod:`graphpress.quantization` run on the working copy of the user's
module (block by block for the calibrated methods), each ``nn.Linear`` becomes a ``QuantizedLinear`` with
packed codes, and the IR's ``graphpress::Linear`` nodes become ``graphpress::QLinear`` nodes whose inputs
are bound to the new module's buffers. On an ONNX model the calibration-free methods (rtn, hqq) quantize
the initializers directly. Either way the ONNX backend writes ``com.microsoft::MatMulNBits``.

``graphpress::QLinear(X, qweight, scales, zeros, bias?)`` attributes: bits, group, in_features,
out_features, act_bits (0: float activations; 8: per-token dynamic 8-bit activations).
"""

from __future__ import annotations

import fnmatch

from ..errors import PassError
from ..ir import GRAPHPRESS_DOMAIN, Graph, ModuleBinding, Node, Parameter, Value
from ..quantization.options import CALIBRATED_METHODS, METHODS
from .base import Pass, PassResult
from .context import PassContext
from .options import Option
from .registry import register_pass

__all__ = ["Quantize", "to_qlinear_node"]

_CALIBRATED = CALIBRATED_METHODS


def _module_constant(graph: Graph, key: str) -> Value:
    return graph.add_constant(Parameter(ModuleBinding(graph.module, key), kind="buffer"))


def to_qlinear_node(node: Node, qweight: Value, scales: Value, zeros: Value, *, bits: int, group: int,
                    in_features: int, out_features: int, act_bits: int) -> None:
    """Turn a ``graphpress::Linear`` node into ``graphpress::QLinear`` in place (bias input kept)."""
    bias = node.input(2)
    node.set_inputs([node.inputs[0], qweight, scales, zeros] + ([bias] if bias is not None else []))
    node.op = "QLinear"
    node.attrs = {"bits": bits, "group": group, "in_features": in_features, "out_features": out_features,
                  "act_bits": act_bits}


def _ignored(scope: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(scope, p) for p in patterns)


@register_pass
class Quantize(Pass):
    name = "quantize"
    summary = ("Quantize Linear weights to packed integers (rtn, gptq, awq, hqq; smoothquant for W8A8); "
               "group=0 means per output channel.")
    options = (
        Option("bits", "int", 4, "weight bits", choices=(2, 3, 4, 8)),
        Option("group", "int", 128, "input columns per scale (0 = per channel); widths that are not a multiple "
               "are padded", low=0),
        Option("method", "str", "rtn", "algorithm", choices=METHODS),
        Option("sym", "bool", False, "symmetric grid (fixed zero point)"),
        Option("integer_zero", "bool", True, "asymmetric grids: integer zero points (0.0 exactly on the grid; "
               "onnxruntime's fast kernels); false: float zero points (reproduce min-offset grids exactly)"),
        Option("act_order", "bool", False, "gptq: quantize columns in order of decreasing Hessian diagonal"),
        Option("act_bits", "int", 0, "activation bits: 0 (float) or 8 (dynamic per token)", choices=(0, 8)),
        Option("alpha", "float", None, "smoothquant migration strength", low=0.0, high=1.0),
        Option("ignore", "list", ["lm_head"], "module-name globs to leave in float (| separated)"),
    )

    def uses_calibration(self) -> bool:
        return self.opts["method"] in _CALIBRATED

    def requires(self, graph: Graph, ctx: PassContext) -> None:
        super().requires(graph, ctx)
        method = self.opts["method"]
        if self.uses_calibration() and graph.origin == "torch" and ctx.calibration is None:
            raise PassError(f"quantize{{method={method}}} needs calibration data: pass calibration=... "
                            "(token windows, strings with a tokenizer, or model inputs), or --calibration FILE")
        if method in _CALIBRATED and graph.origin != "torch":
            raise PassError(f"quantize{{method={method}}} runs calibration through a torch model; on an ONNX "
                            "model use method=rtn or method=hqq (or quantize the torch model, then export)")
        if self.opts["group"] not in (0,) and (self.opts["group"] < 8 or self.opts["group"] % 4):
            raise PassError(f"quantize: group={self.opts['group']} must be 0 (per channel) or a multiple of 4 >= 8")

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        if graph.origin == "torch":
            return self._call_torch(graph, ctx)
        return self._call_onnx(graph)

    def _call_torch(self, graph: Graph, ctx: PassContext) -> PassResult:
        from ..progress import progress
        from ..quantization import QuantizedLinear, quantize_model

        o = self.opts
        extra = {"alpha": o["alpha"]} if o["alpha"] is not None else {}
        if o["act_bits"]:
            extra["act_bits"] = o["act_bits"]
        with progress(None, f"quantize ({o['method']}, W{o['bits']})") as bar:
            def tick(done: int, total: int) -> None:
                bar.update(1)

            # Only modules the graph computes as a Linear are swapped: the IR's nodes must follow the swap.
            linears = sorted({n.scope for n in graph.nodes if n.op == "Linear" and n.domain == GRAPHPRESS_DOMAIN
                              and n.scope})
            report = quantize_model(graph.module, bits=o["bits"], group=o["group"], method=o["method"],
                                    sym=o["sym"], act_order=o["act_order"], ignore=o["ignore"], targets=linears,
                                    integer_zero=o["integer_zero"],
                                    calibration=ctx.calibration, tokenizer=ctx.tokenizer, progress=tick, **extra)
        converted = 0
        for node in graph.nodes:
            if node.op != "Linear" or node.domain != GRAPHPRESS_DOMAIN or not node.scope:
                continue
            try:
                module = graph.module.get_submodule(node.scope)
            except AttributeError:
                continue
            if not isinstance(module, QuantizedLinear):
                continue
            consts = [_module_constant(graph, f"{node.scope}.{b}") for b in ("qweight", "scales", "zeros")]
            bias = node.input(2)
            if bias is not None and module.bias is not None:
                node.set_input(2, _module_constant(graph, f"{node.scope}.bias"))
            to_qlinear_node(node, *consts, bits=module.bits, group=module.group, in_features=module.in_features,
                            out_features=module.out_features, act_bits=module.act_bits or 0)
            converted += 1
        graph.prune_unused_constants()
        stats = {"layers": converted, "method": o["method"], "seconds": round(report.seconds, 2),
                 "size_ratio": round(report.size_ratio, 4), "fallback_rtn": len(report.fallback_rtn)}
        return PassResult(graph, converted > 0, stats)

    def _call_onnx(self, graph: Graph) -> PassResult:
        from ..quantization.grid import QuantizedWeight
        from ..quantization.hqq import hqq_quantize

        o = self.opts
        converted = 0
        for node in list(graph.nodes):
            if node.op != "Linear" or node.domain != GRAPHPRESS_DOMAIN:
                continue
            weight = node.input(1)
            if weight is None or weight.param is None or weight.param.is_meta:
                continue
            names = (node.scope, node.name, weight.param.key.removesuffix(".weight"))
            if any(_ignored(name, o["ignore"]) for name in names if name):
                continue
            w = weight.param.data.float()
            if o["method"] == "hqq":
                q = hqq_quantize(w, o["bits"], o["group"], o["sym"])
            else:
                q = QuantizedWeight.round_to_nearest(w, o["bits"], o["group"], o["sym"],
                                                     integer_zero=o["integer_zero"])
            consts = [graph.constant(t, f"{node.name}_{n}") for t, n in
                      ((q.qweight, "qweight"), (q.scales, "scales"), (q.zeros, "zeros"))]
            to_qlinear_node(node, *consts, bits=q.bits, group=q.group, in_features=q.in_features,
                            out_features=w.shape[0], act_bits=o["act_bits"])
            converted += 1
        graph.prune_unused_constants()
        return PassResult(graph, converted > 0, {"layers": converted, "method": o["method"]})
