"""``quantize``: weight-only (and W8A8) post-training quantization of every Linear, on torch and ONNX models.

On a torch model the algorithms of :mod:`graphpress.quantization` run on the working copy of the user's
module (block by block for the calibrated methods), each ``nn.Linear`` becomes a ``QuantizedLinear`` with
packed codes, and the IR's ``graphpress::Linear`` nodes become ``graphpress::QLinear`` nodes whose inputs
are bound to the new module's buffers. That includes products the model computes from a linear's parameters
outside the module (``F.linear(x, self.qkv.weight, self.qkv.bias)`` in a parent's forward, as torchvision's
Swin does): the weight's binding names the module (:mod:`.linear_owners`), and the swapped module's read-only
``weight`` gives such code the dequantized tensor. A linear whose weight the model also reads any other way
(transposed, sliced, by a non-Linear op) stays float, and the pass names it in one warning. On an ONNX model
the calibration-free methods (rtn, hqq) quantize the initializers directly. Either way the ONNX backend writes
``com.microsoft::MatMulNBits``.

``graphpress::QLinear(X, qweight, scales, zeros, bias?)`` attributes: bits, group, in_features,
out_features, act_bits (0: float activations; 8: per-token dynamic 8-bit activations).
"""

from __future__ import annotations

import fnmatch
import logging
import math

from ..errors import PassError
from ..ir import GRAPHPRESS_DOMAIN, Graph, ModuleBinding, Node, Parameter, Value
from ..quantization.options import CALIBRATED_METHODS, METHODS
from ..quantization.swap import select_linears
from .base import Pass, PassResult
from .context import PassContext
from .linear_like import adopt_linear_like_modules
from .linear_owners import LinearOwners, linear_owners
from .options import Option
from .registry import register_pass

__all__ = ["Quantize", "to_qlinear_node"]

_CALIBRATED = CALIBRATED_METHODS
_log = logging.getLogger("graphpress")
_NAMED = 8  # kept-float modules named in the warning before "+N more"


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


def _follow_swap(graph: Graph, node: Node, owner: str) -> bool:
    """Turn ``node`` into a QLinear bound to the buffers of the module at ``owner`` if that module is now a
    ``QuantizedLinear``; True if it did. The bias input is rebound only when it is that module's own bias: a
    bias the model computed (Swin-V2 zeroes the key part of a copy) stays the value it was. Activations are
    quantized (``act_bits``) only where the module is called: ``F.linear`` on its ``weight`` elsewhere is
    weight-only, in the model as in the IR."""
    from ..quantization import QuantizedLinear

    module = graph.module.get_submodule(owner)
    if not isinstance(module, QuantizedLinear):
        return False
    consts = [_module_constant(graph, f"{owner}.{b}") for b in ("qweight", "scales", "zeros")]
    bias = node.input(2)
    if bias is not None and bias.param is not None and bias.param.key == f"{owner}.bias" and module.bias is not None:
        node.set_input(2, _module_constant(graph, f"{owner}.bias"))
    to_qlinear_node(node, *consts, bits=module.bits, group=module.group, in_features=module.in_features,
                    out_features=module.out_features, act_bits=(module.act_bits or 0) if node.scope == owner else 0)
    return True


def _warn_kept_float(graph: Graph, owners: LinearOwners, ignore: list[str]) -> list[str]:
    """Log one warning naming the linears (not ignored) that stay float because the model reads their weight
    some other way, with the read that rules each out; their names."""
    kept = list(select_linears(graph.module, ignore, targets=sorted(owners.kept)))
    if kept:
        named = "; ".join(f"{name} ({owners.kept[name]})" for name in kept[:_NAMED])
        more = f"; +{len(kept) - _NAMED} more" if len(kept) > _NAMED else ""
        _log.warning("graphpress: quantize: %d linear(s) stay in float because the model also reads their weight "
                     "outside a linear product: %s%s", len(kept), named, more)
    return kept


def _note_float_convolutions(graph: Graph) -> int:
    """Warn when convolutions, which ``quantize`` leaves in float, hold most of the weights; their parameters.

    A CNN's weights are nearly all convolutions (ResNet-50: 92%), so a quantized CNN may be barely smaller
    than the float one: say so instead of letting the size speak for itself."""
    convs = [n for n in graph.nodes if n.op in ("Conv", "ConvTranspose") and n.domain == ""
             and n.input(1) is not None and n.input(1).param is not None]
    conv_params = sum(math.prod(n.input(1).param.shape) for n in convs)
    total = graph.parameter_count()
    if convs and conv_params * 2 > total:
        _log.warning("graphpress: quantize: %d convolution(s) stay in float (%s parameters, %.0f%% of the "
                     "weights): quantize covers linear layers (Linear, MatMul, Gemm)", len(convs),
                     f"{conv_params:,}", 100 * conv_params / max(total, 1))
    return conv_params


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
        float_convs = _note_float_convolutions(graph)
        result = self._call_torch(graph, ctx) if graph.origin == "torch" else self._call_onnx(graph)
        result.stats["float_conv_params"] = float_convs
        return result

    def _call_torch(self, graph: Graph, ctx: PassContext) -> PassResult:
        from ..progress import progress
        from ..quantization import quantize_model

        o = self.opts
        extra = {"alpha": o["alpha"]} if o["alpha"] is not None else {}
        if o["act_bits"]:
            extra["act_bits"] = o["act_bits"]
        # Only modules the graph computes as a Linear (called, or read by F.linear elsewhere) and whose weight
        # it reads no other way are swapped: the IR's nodes must follow the swap.
        adopt_linear_like_modules(graph)  # GPT-2's Conv1D and the like become nn.Linear first
        owners = linear_owners(graph)
        kept = _warn_kept_float(graph, owners, o["ignore"])
        with progress(None, f"quantize ({o['method']}, W{o['bits']})") as bar:
            def tick(done: int, total: int) -> None:
                bar.update(1)

            report = quantize_model(graph.module, bits=o["bits"], group=o["group"], method=o["method"],
                                    sym=o["sym"], act_order=o["act_order"], ignore=o["ignore"],
                                    targets=owners.swappable, integer_zero=o["integer_zero"],
                                    calibration=ctx.calibration, tokenizer=ctx.tokenizer, progress=tick, **extra)
        converted = sum(_follow_swap(graph, node, owner) for node, owner in owners.nodes)
        graph.prune_unused_constants()
        stats = {"layers": converted, "method": o["method"], "seconds": round(report.seconds, 2),
                 "size_ratio": round(report.size_ratio, 4), "fallback_rtn": len(report.fallback_rtn),
                 "kept_float": len(kept)}
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
