"""Coupling rules on hand-built IR graphs: each op family maps channel indices as DESIGN.md section 2 says."""

from __future__ import annotations

import numpy as np
import torch

from graphpress.analysis.coupling import compute_coupling, format_groups, groups_as_dicts, reshape_groups
from graphpress.ir import GRAPHPRESS_DOMAIN, Graph

F32 = torch.float32


def _weight(graph: Graph, *shape: int, name: str):
    value = graph.constant(torch.randn(*shape), name)
    value.param.kind = "parameter"
    return value


def _node(graph: Graph, op: str, inputs, shape, attrs=None, domain: str = "", n_outputs: int = 1, shapes=None):
    node = graph.make_node(op, inputs, n_outputs, attrs, domain=domain)
    for out, out_shape in zip(node.outputs, shapes or [shape]):
        out.shape, out.dtype = tuple(out_shape), F32
    return node.outputs[0] if n_outputs == 1 else node.outputs


def _linear(graph: Graph, x, out_features: int, name: str):
    w = _weight(graph, out_features, x.shape[-1], name=f"{name}.weight")
    return _node(graph, "Linear", [x, w], (*x.shape[:-1], out_features), domain=GRAPHPRESS_DOMAIN)


def _group_with(result, key: str, axis: int):
    for g in result.groups:
        if any(m.key == key and m.axis == axis for m in g.members):
            return g
    raise AssertionError(f"no group holds {key}[{axis}]")


def test_reshape_groups_factor_blocks():
    assert reshape_groups((2, 8, 32), (2, 8, 4, 8)) == [([0], [0]), ([1], [1]), ([2], [2, 3])]
    assert reshape_groups((1, 6, 4, 4), (1, 96)) == [([1, 2, 3], [1])]
    assert reshape_groups(("b", 12), ("b", 3, 4)) == [([0], [0]), ([1], [1, 2])]
    assert reshape_groups((6, 4), (4, 6)) == [([0, 1], [0, 1])]  # one block of 24
    # Equal element counts: a trailing block of equal size holds the same elements whatever leads it, so
    # unrelated run-time symbols in front become one block of their own (followed only if it holds no channel).
    assert reshape_groups(("b", 12), ("s", 12)) == [([0], [0]), ([1], [1])]
    assert reshape_groups(("n", 64), ("b", 12, 64)) == [([0], [0, 1]), ([1], [2])]
    assert reshape_groups(("b", 4, 8, 12), ("m", "d", 12)) == [([0, 1, 2], [0, 1]), ([3], [2])]
    assert reshape_groups(("b",), ("b", "s")) is None


def _sequence_dense(graph: Graph, x, out_features: int, name: str, rows: str, batch: str):
    """tf2onnx's Dense on a sequence: flatten to [rows, C], multiply, reshape back, each with its own symbol."""
    flat = _node(graph, "Reshape", [x, graph.constant(torch.tensor([-1, x.shape[-1]]))], (rows, x.shape[-1]))
    y = _linear(graph, flat, out_features, name)
    return _node(graph, "Reshape", [y, graph.constant(torch.tensor([-1, 12, out_features]))], (batch, 12, out_features))


def test_channels_pass_reshapes_whose_leading_dims_are_unrelated_symbols():
    g = Graph("keras-mlp", origin="onnx")
    x = g.add_input("x", ("batch", 12, 32), F32)
    hidden = _node(g, "Relu", [_sequence_dense(g, x, 64, "up", "n1", "b1")], ("b1", 12, 64))
    y = _node(g, "Add", [_sequence_dense(g, hidden, 32, "down", "n2", "b2"), x], ("batch", 12, 32))
    g.outputs = [y]
    result = compute_coupling(g)
    inner = _group_with(result, "up.weight", 0)
    assert inner is _group_with(result, "down.weight", 1) and inner.units == 64 and inner.prunable_units == 64


def test_a_channel_merged_with_run_time_dims_is_frozen_and_named():
    g = Graph("merge", origin="onnx")
    x = g.add_input("x", ("batch", 12, 32), F32)
    up = _linear(g, x, 16, "up")
    merged = _node(g, "Reshape", [up, g.constant(torch.tensor([-1, 12]))], ("m", 12))  # batch x 16 -> m
    back = _node(g, "Reshape", [merged, g.constant(torch.tensor([-1, 12, 16]))], ("batch", 12, 16))
    g.outputs = [_linear(g, back, 3, "head")]
    result = compute_coupling(g)
    group = _group_with(result, "up.weight", 0)
    assert not group.prunable
    assert any("known only at run time" in reason for reason in group.frozen_reasons.values())


def test_heads_split_makes_whole_head_units_and_residual_couples():
    g = Graph("heads", origin="onnx")
    x = g.add_input("x", (1, 5, 16), F32)
    q = _linear(g, x, 16, "q")
    heads = _node(g, "Reshape", [q, g.constant(torch.tensor([1, 5, 4, 4]))], (1, 5, 4, 4))
    merged = _node(g, "Reshape", [heads, g.constant(torch.tensor([1, 5, 16]))], (1, 5, 16))
    o = _linear(g, merged, 16, "o")
    up = _linear(g, x, 16, "up")
    y = _node(g, "Add", [o, up], (1, 5, 16))
    z = _linear(g, y, 3, "head")
    g.outputs = [z]
    result = compute_coupling(g)
    qg = _group_with(result, "q.weight", 0)
    assert qg.units == 4 and qg.unit_size == 4  # 4 heads of head_dim 4
    assert _group_with(result, "o.weight", 1) is qg
    residual = _group_with(result, "o.weight", 0)
    assert _group_with(result, "up.weight", 0) is residual and _group_with(result, "head.weight", 1) is residual
    assert residual.units == 16 and residual.prunable
    assert not _group_with(result, "q.weight", 1).prunable  # model input features are fixed


def test_channel_shuffle_and_concat_never_mispair():
    g = Graph("shuffle", origin="onnx")
    x = g.add_input("x", (1, 3, 4, 4), F32)
    a = _node(g, "Conv", [x, _weight(g, 4, 3, 1, 1, name="a.weight")], (1, 4, 4, 4), {"group": 1})
    b = _node(g, "Conv", [x, _weight(g, 4, 3, 1, 1, name="b.weight")], (1, 4, 4, 4), {"group": 1})
    cat = _node(g, "Concat", [a, b], (1, 8, 4, 4), {"axis": 1})
    r = _node(g, "Reshape", [cat, g.constant(torch.tensor([1, 2, 4, 4, 4]))], (1, 2, 4, 4, 4))
    t = _node(g, "Transpose", [r], (1, 4, 2, 4, 4), {"perm": [0, 2, 1, 3, 4]})
    s = _node(g, "Reshape", [t, g.constant(torch.tensor([1, 8, 4, 4]))], (1, 8, 4, 4))
    out = _node(g, "Conv", [s, _weight(g, 2, 8, 1, 1, name="c.weight")], (1, 2, 4, 4), {"group": 1})
    g.outputs = [out]
    result = compute_coupling(g)
    group = _group_with(result, "c.weight", 1)
    assert _group_with(result, "a.weight", 0) is group and _group_with(result, "b.weight", 0) is group
    c_member = next(m for m in group.members if m.key == "c.weight")
    a_member = next(m for m in group.members if m.key == "a.weight")
    # After the shuffle, c's input channel 1 is b's channel 0 (a group's block is kept whole): so c's units
    # follow the shuffled order, never a's plain order.
    assert c_member.unit_of[1] == next(m for m in group.members if m.key == "b.weight").unit_of[0]
    assert len(set(a_member.unit_of.tolist())) == 1  # the reshape's outer block (one shuffle group) is one unit


def test_gqa_attention_couples_kv_head_with_query_group():
    g = Graph("gqa", origin="onnx")
    x = g.add_input("x", (1, 5, 8), F32)
    q = _node(g, "Reshape", [_linear(g, x, 8, "q"), g.constant(torch.tensor([1, 5, 4, 2]))], (1, 5, 4, 2))
    k = _node(g, "Reshape", [_linear(g, x, 4, "k"), g.constant(torch.tensor([1, 5, 2, 2]))], (1, 5, 2, 2))
    v = _node(g, "Reshape", [_linear(g, x, 4, "v"), g.constant(torch.tensor([1, 5, 2, 2]))], (1, 5, 2, 2))
    perm = {"perm": [0, 2, 1, 3]}
    qt, kt, vt = (_node(g, "Transpose", [t], (1, t.shape[2], 5, 2), perm) for t in (q, k, v))
    att = _node(g, "Attention", [qt, kt, vt], (1, 4, 5, 2), {"is_causal": 1}, domain=GRAPHPRESS_DOMAIN)
    back = _node(g, "Transpose", [att], (1, 5, 4, 2), perm)
    flat = _node(g, "Reshape", [back, g.constant(torch.tensor([1, 5, 8]))], (1, 5, 8))
    g.outputs = [_node(g, "Add", [_linear(g, flat, 8, "o"), x], (1, 5, 8))]
    result = compute_coupling(g)
    group = _group_with(result, "q.weight", 0)
    assert group.units == 2  # two KV heads, each with its two query heads
    q_units = next(m for m in group.members if m.key == "q.weight").unit_of
    k_units = next(m for m in group.members if m.key == "k.weight").unit_of
    assert q_units.tolist() == [k_units[0]] * 4 + [k_units[2]] * 4
    assert any("query head" in note for note in group.notes)


def test_unknown_op_freezes_and_is_reported_by_name():
    g = Graph("unknown", origin="onnx")
    x = g.add_input("x", (1, 6), F32)
    h = _linear(g, x, 6, "fc1")
    weird = g.make_node("MysteryOp", [h], 1, domain="custom")
    weird.outputs[0].shape, weird.outputs[0].dtype = (1, 6), F32
    g.outputs = [_linear(g, weird.outputs[0], 2, "fc2")]
    result = compute_coupling(g)
    assert weird.name in result.uncovered
    group = _group_with(result, "fc1.weight", 0)
    assert not group.prunable and any(weird.name in why for why in group.frozen_reasons.values())
    assert weird.name in format_groups(result)


def test_depthwise_conv_couples_in_and_out_and_dicts_are_plain():
    g = Graph("dw", origin="onnx")
    x = g.add_input("x", (1, 3, 4, 4), F32)
    a = _node(g, "Conv", [x, _weight(g, 6, 3, 1, 1, name="pw.weight")], (1, 6, 4, 4), {"group": 1})
    d = _node(g, "Conv", [a, _weight(g, 6, 1, 3, 3, name="dw.weight")], (1, 6, 4, 4),
              {"group": 6, "pads": [1, 1, 1, 1]})
    g.outputs = [_node(g, "Conv", [d, _weight(g, 2, 6, 1, 1, name="out.weight")], (1, 2, 4, 4), {"group": 1})]
    result = compute_coupling(g)
    group = _group_with(result, "dw.weight", 0)
    assert _group_with(result, "pw.weight", 0) is group and _group_with(result, "out.weight", 1) is group
    assert group.units == 6 and group.prunable
    dicts = groups_as_dicts(result)
    entry = next(d for d in dicts if d["index"] == group.index)
    assert {m["key"] for m in entry["members"]} >= {"pw.weight", "dw.weight", "out.weight"}
    assert np.array(entry["members"][0]["unit_of_position"]).size == 6
