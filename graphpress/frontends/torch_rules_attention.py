"""Lowering rule for ``aten.scaled_dot_product_attention`` -> ``graphpress::Attention``.

Besides the one-to-one mapping, two Hugging Face idioms are undone so the IR states what the model means:

* ``repeat_kv`` (Unsqueeze -> Expand -> Reshape of K and V to the query head count) is dropped, because
  the IR Attention already has grouped-query semantics: the coupling analysis then sees that each K/V head
  serves a block of consecutive query heads instead of a broadcast it would have to reverse-engineer.
* a constant boolean mask equal to the causal triangle (what HF builds when nothing is padded) becomes
  ``is_causal=1``, so the graph holds no batch-sized constant and the kernels can use their causal path.
"""

from __future__ import annotations

import torch
import torch.fx

from ..errors import UnsupportedOpError
from ..ir import GRAPHPRESS_DOMAIN, Value
from .torch_context import LoweringContext
from .torch_registry import lowers

__all__: list[str] = []  # rules register themselves; nothing here is called directly

aten = torch.ops.aten


def _unrepeated_kv(value: Value) -> Value:
    """The K/V tensor before Hugging Face's ``repeat_kv``, when ``value`` is one; else ``value`` itself.

    ``repeat_kv`` turns [b, kv, s, d] into [b, kv * r, s, d] by Unsqueeze(axis 2) -> Expand -> Reshape,
    which is exactly the IR Attention's grouped-query rule (each K/V head serves r consecutive query
    heads). Feeding the un-repeated tensor keeps the grouping visible to the coupling analysis instead of
    hiding it behind a broadcast.
    """
    reshape = value.producer
    if reshape is None or reshape.op != "Reshape" or len(value.shape or ()) != 4:
        return value
    expand = reshape.inputs[0].producer
    if expand is None or expand.op != "Expand":
        return value
    unsqueeze = expand.inputs[0].producer
    if unsqueeze is None or unsqueeze.op != "Unsqueeze":
        return value
    axes, source = unsqueeze.inputs[1], unsqueeze.inputs[0]
    if axes.param is None or axes.param.data.tolist() != [2] or len(source.shape or ()) != 4:
        return value
    b, kv, s, d = source.shape
    heads = value.shape[1]
    expanded = expand.outputs[0].shape
    if not (isinstance(kv, int) and isinstance(heads, int) and heads % kv == 0):
        return value
    if expanded != (b, kv, heads // kv, s, d) or value.shape != (b, heads, s, d):
        return value
    return source


def _is_causal_constant(mask: Value | None, query: Value, key: Value) -> bool:
    """True for a constant boolean mask that is torch's ``is_causal`` triangle (Hugging Face builds one
    when nothing is padded); replacing it by ``is_causal=1`` keeps the graph free of a batch-sized constant."""
    if mask is None or mask.param is None or mask.param.kind != "constant" or mask.dtype != torch.bool:
        return False
    q_len, k_len = query.shape[-2], key.shape[-2]
    data = mask.param.data
    if data.dim() < 2 or tuple(data.shape[-2:]) != (q_len, k_len):
        return False
    return bool((data == torch.ones(q_len, k_len, dtype=torch.bool).tril()).all())


@lowers(aten.scaled_dot_product_attention)
def attention(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    if a["dropout_p"]:
        raise UnsupportedOpError(f"{ctx.describe()} uses attention dropout; call model.eval() before tracing")
    mask = a["attn_mask"]
    causal = bool(a["is_causal"])
    if not causal and _is_causal_constant(mask, a["query"], a["key"]):
        mask, causal = None, True
    attrs = {"is_causal": int(causal)}
    if a["scale"] is not None:
        attrs["scale"] = float(a["scale"])
    key, value = _unrepeated_kv(a["key"]), _unrepeated_kv(a["value"])
    if key.shape[1] != value.shape[1]:  # only one of them was repeated: keep both as torch computed them
        key, value = a["key"], a["value"]
    inputs = [a["query"], key, value] + ([mask] if mask is not None else [])
    return ctx.emit("Attention", inputs, attrs, domain=GRAPHPRESS_DOMAIN)
