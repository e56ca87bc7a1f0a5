"""Standard-ONNX stand-ins for onnxruntime's fused ``com.microsoft`` ops, used for shape inference only.

onnxruntime's offline optimizer (level "extended") writes FusedConv, FusedGemm, FusedMatMul, the Gelu
family and SkipLayerNormalization. ONNX shape inference knows none of them, and onnxruntime's own
``SymbolicShapeInference`` (onnxruntime 1.32) does not know FusedConv, FusedGemm nor FusedMatMul either
(it guesses their output dims as fresh symbols), so a file optimized from an export without value_info
would leave every channel behind them unsized, hence frozen. Each of those ops computes the same shapes
as the standard ops it was fused from, so the model written for :func:`~.shapes.infer_shapes` gets, in
place of each fused node, the unfused nodes that produce its outputs under the same names:

* FusedConv(X, W, B?, Z?) -> Conv(X, W, B?) (the activation and the added Z keep the shape);
* FusedGemm -> Gemm; FusedMatMul -> MatMul of the (last-two-axes) transposed operands;
* Gelu, FastGelu, BiasGelu, QuickGelu, BiasAdd -> the broadcast ``Add`` of their inputs (Identity for one);
* SkipLayerNormalization / SkipSimplifiedLayerNormalization -> ``Add`` of input, skip and bias, then
  ``LayerNormalization`` over the last axis (its mean and inverse std-dev are the fused op's outputs 1
  and 2), the sum being output 3.

The written file keeps the fused ops: stand-ins never leave :mod:`.shapes`. A node whose stand-in needs an
operand rank not known yet (FusedMatMul's transposes) stays opaque for that round and is counted as
waiting, so the caller can infer again once the ranks are known.
"""

from __future__ import annotations

from typing import Callable

import onnx

from ...ir.fused_ops import FUSED_ELEMENTWISE, MS_DOMAIN, SKIP_NORM_INPUTS

__all__ = ["replace_with_proxies"]

RankOf = Callable[[str], "int | None"]
_Proxy = Callable[[onnx.NodeProto, RankOf, int], "list[onnx.NodeProto] | None"]
_PROXIES: dict[tuple[str, str], _Proxy] = {}

_CONV_ATTRS = frozenset({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"})
_GEMM_ATTRS = frozenset({"transA", "transB", "alpha", "beta"})


def _proxy(*ops: str) -> Callable[[_Proxy], _Proxy]:
    def register(fn: _Proxy) -> _Proxy:
        for op in ops:
            _PROXIES[(MS_DOMAIN, op)] = fn
        return fn
    return register


class _NeedsRank(Exception):
    """The stand-in needs the rank of an operand that is not known yet."""


def _tmp(node: onnx.NodeProto, what: str) -> str:
    return f"{node.name or node.output[0]}__gp_shape_{what}"


def _copy_attrs(node: onnx.NodeProto, target: onnx.NodeProto, keep: frozenset[str]) -> onnx.NodeProto:
    """``target`` with the attributes of ``node`` that the standard op also has (activation ones dropped)."""
    target.attribute.extend(a for a in node.attribute if a.name in keep)
    return target


@_proxy("FusedConv")
def _fused_conv(node: onnx.NodeProto, rank_of: RankOf, opset: int) -> list[onnx.NodeProto]:
    conv = onnx.helper.make_node("Conv", list(node.input[:3]), [node.output[0]], name=_tmp(node, "conv"))
    return [_copy_attrs(node, conv, _CONV_ATTRS)]


@_proxy("FusedGemm")
def _fused_gemm(node: onnx.NodeProto, rank_of: RankOf, opset: int) -> list[onnx.NodeProto]:
    gemm = onnx.helper.make_node("Gemm", list(node.input[:3]), [node.output[0]], name=_tmp(node, "gemm"))
    return [_copy_attrs(node, gemm, _GEMM_ATTRS)]


def _attr(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


@_proxy("FusedMatMul")
def _fused_matmul(node: onnx.NodeProto, rank_of: RankOf, opset: int) -> list[onnx.NodeProto] | None:
    if _attr(node, "transBatchA", 0) or _attr(node, "transBatchB", 0):
        return None  # batch axes moved into the matrix: rare, left opaque
    out: list[onnx.NodeProto] = []
    operands = []
    for index, flag in ((0, "transA"), (1, "transB")):
        name = node.input[index]
        if not _attr(node, flag, 0):
            operands.append(name)
            continue
        rank = rank_of(name)
        if rank is None:
            raise _NeedsRank(name)
        if rank < 2:
            return None
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        moved = _tmp(node, f"t{index}")
        out.append(onnx.helper.make_node("Transpose", [name], [moved], name=moved, perm=perm))
        operands.append(moved)
    out.append(onnx.helper.make_node("MatMul", operands, [node.output[0]], name=_tmp(node, "matmul")))
    return out


def _add_chain(node: onnx.NodeProto, inputs: list[str], result: str) -> list[onnx.NodeProto]:
    """``result`` = the broadcast sum of ``inputs`` (an Identity of a single one)."""
    present = [name for name in inputs if name]
    if len(present) == 1:
        return [onnx.helper.make_node("Identity", present, [result], name=_tmp(node, "id"))]
    nodes, acc = [], present[0]
    for k, term in enumerate(present[1:], start=1):
        target = result if k == len(present) - 1 else _tmp(node, f"sum{k}")
        nodes.append(onnx.helper.make_node("Add", [acc, term], [target], name=_tmp(node, f"add{k}")))
        acc = target
    return nodes


@_proxy(*FUSED_ELEMENTWISE)
def _elementwise(node: onnx.NodeProto, rank_of: RankOf, opset: int) -> list[onnx.NodeProto]:
    return _add_chain(node, list(node.input), node.output[0])


@_proxy(*SKIP_NORM_INPUTS)
def _skip_norm(node: onnx.NodeProto, rank_of: RankOf, opset: int) -> list[onnx.NodeProto] | None:
    if opset < 17:
        return None  # LayerNormalization (the stand-in for the statistics outputs) is opset 17+
    gamma, beta, bias = SKIP_NORM_INPUTS[node.op_type]
    inputs = list(node.input)

    def at(index: int | None) -> str:
        return inputs[index] if index is not None and index < len(inputs) else ""

    outputs = list(node.output) + [""] * (4 - len(node.output))
    total = outputs[3] or _tmp(node, "sum")
    nodes = _add_chain(node, [inputs[0], inputs[1], at(bias)], total)
    norm_inputs = [total, at(gamma)] + ([at(beta)] if at(beta) else [])
    nodes.append(onnx.helper.make_node("LayerNormalization", norm_inputs, outputs[:3], name=_tmp(node, "norm"), axis=-1))
    return nodes


def replace_with_proxies(model: onnx.ModelProto, rank_of: RankOf) -> tuple[set[str], int]:
    """Swap every fused node of ``model`` that has a stand-in for it, in place, and drop the value_info
    hints of the outputs the stand-ins now size (inference derives them, as for any standard op).

    Returns the names of the outputs so sized and how many fused nodes wait for an operand's rank (a
    later round, once shapes are known, may replace them)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    sized: set[str] = set()
    waiting = 0
    new_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        proxy = _PROXIES.get((node.domain, node.op_type))
        try:
            stand_in = proxy(node, rank_of, opset) if proxy is not None else None
        except _NeedsRank:
            stand_in, waiting = None, waiting + 1
        if stand_in is None:
            new_nodes.append(node)
            continue
        sized.update(name for name in node.output if name)
        new_nodes.extend(stand_in)
    if sized:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        hints = [info for info in model.graph.value_info if info.name not in sized]
        del model.graph.value_info[:]
        model.graph.value_info.extend(hints)
    return sized, waiting
