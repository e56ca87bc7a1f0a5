"""Coupling rule of the ``graphpress::Attention`` macro op: heads, and grouped-query attention.

Q is [batch, q_heads, seq, head_dim], K and V are [batch, kv_heads, seq, head_dim]. Query head h reads
K/V head ``h // (q_heads / kv_heads)``, so a KV head and its query group form one unit: pruning it removes
the K and V rows and the whole query group, which keeps ``q_heads / kv_heads`` (the GQA ratio Hugging Face
models require) unchanged. K and V heads are coupled with each other. ``head_dim`` is kept whole (RoPE
rotates pairs across it and the model's config holds one value for it), so ids on it are frozen. The
output head axis follows Q's, and so does the head axis of a per-head mask or position bias.
"""

from __future__ import annotations

from ...ir import GRAPHPRESS_DOMAIN, Node
from .rules import coupling_rule, freeze_uncovered
from .state import CouplingState

__all__ = ["attention"]


@coupling_rule("Attention", domain=GRAPHPRESS_DOMAIN)
def attention(state: CouplingState, node: Node) -> None:
    q, k, v, mask = (node.input(i) for i in range(4))
    if any(t is None or len(t.shape or ()) != 4 for t in (q, k, v)):
        return freeze_uncovered(state, node)
    lq, lk, lv = state.get(q), state.get(k), state.get(v)
    for labels in (lq, lk, lv):
        state.freeze(labels[3], "head_dim is kept whole (RoPE and the config's single head_dim)", node)
        state.freeze(labels[2], "sequence positions", node)
    q_heads, kv_heads = int(q.shape[1]), int(k.shape[1])
    head_q, head_k, head_v = lq[1], lk[1], lv[1]
    if head_k is not None and head_v is not None:
        state.equate(head_k, head_v)
    elif head_k is not None or head_v is not None:
        state.freeze(head_k if head_k is not None else head_v, "K and V heads must shrink together", node)
        head_k = None
    rep = q_heads // kv_heads if kv_heads else 0
    if head_q is not None and head_k is not None and rep * kv_heads == q_heads:
        state.equate(head_q.reshape(kv_heads, rep), head_k.reshape(kv_heads, 1))
    elif head_q is not None or head_k is not None:
        state.freeze(head_q, "query heads whose K/V heads can't shrink with them", node)
        state.freeze(head_k, "K/V heads whose query heads can't shrink with them", node)
        head_q = None
    if mask is not None:
        # The mask broadcasts against the scores [batch, heads, q_len, k_len] from the right, so a 3-D one
        # ([heads, q_len, k_len]: TinyViT's and LeViT's per-head position biases) has its heads first.
        lm = state.get(mask)
        head_axis = len(lm) - 3
        if head_axis >= 0 and mask.shape[head_axis] != 1:
            if lm[head_axis] is not None and head_q is not None:
                state.equate(lm[head_axis], head_q)
            else:
                state.freeze(head_q, "a per-head attention mask of fixed size", node)
                state.freeze(lm[head_axis], "heads of a mask whose attention heads can't shrink", node)
                head_q = None
    out = node.outputs[0]
    if head_q is not None:
        state.remember(node, "q_heads", head_q)
    state.set(out, [lq[0], head_q, None, None])
