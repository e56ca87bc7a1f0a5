"""fuse-qkv / fuse-gate-up / fuse-siblings: sibling Linears become one Linear + Split, exactly."""

import copy

import onnxruntime as ort
import torch
from torch import nn

import graphpress
from graphpress.backends.fused_linear import FusedLinear, SiblingSlice, unfuse_linears
from graphpress.testing import max_relative_error as _rel
from graphpress.testing import run_onnx as _ort
from graphpress.testing.zoo import tiny_case


def _logits(model, case):
    with torch.no_grad():
        return model(**case.inputs, **case.call_kwargs).logits


def test_llama_torch_fuses_qkv_and_gate_up():
    case = tiny_case("llama")
    expected = case.run().logits
    before = copy.deepcopy(case.model.state_dict())
    out, report = graphpress.optimize(case.model, "fuse-qkv,fuse-gate-up", example_inputs=case.inputs,
                                      example_kwargs=case.call_kwargs, return_report=True)
    qkv, gate_up = (r.stats for r in report.records)
    assert qkv["groups_fused"] == 2 and qkv["linears_fused"] == 6 and qkv["gemms_saved"] == 4
    assert gate_up["groups_fused"] == 2 and gate_up["linears_fused"] == 4
    assert type(out) is type(case.model)
    attn, mlp = out.model.layers[0].self_attn, out.model.layers[0].mlp
    assert isinstance(attn.q_proj, SiblingSlice) and isinstance(attn.fused_q_proj_k_proj_v_proj, FusedLinear)
    assert attn.fused_q_proj_k_proj_v_proj.split_sizes == [64, 32, 32]  # GQA: [q | k | v]
    assert isinstance(mlp.fused_gate_proj_up_proj, FusedLinear)
    assert isinstance(mlp.down_proj, nn.Linear)
    assert _rel(_logits(out, case), expected) <= 1e-5
    # the user's model is untouched
    assert isinstance(case.model.model.layers[0].self_attn.q_proj, nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in case.model.state_dict().items())


def test_fused_torch_model_exports_one_matmul_per_group_and_unfuses(tmp_path):
    case = tiny_case("llama")
    expected = case.run().logits
    out = graphpress.optimize(case.model, "fuse-qkv,fuse-gate-up", example_inputs=case.inputs,
                              example_kwargs=case.call_kwargs)
    path = graphpress.export_onnx(out, tmp_path / "fused.onnx", example_inputs=case.inputs,
                                  example_kwargs=case.call_kwargs)
    import onnx

    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("Split") == 4 and ops.count("MatMul") == 19 - 6
    assert unfuse_linears(out) == 10
    assert sorted(out.state_dict()) == sorted(case.model.state_dict())
    assert _rel(_logits(out, case), expected) <= 1e-5


def test_slice_called_with_another_tensor_recomputes():
    case = tiny_case("llama")
    out = graphpress.optimize(case.model, "fuse-qkv", example_inputs=case.inputs, example_kwargs=case.call_kwargs)
    attn, ref = out.model.layers[0].self_attn, case.model.model.layers[0].self_attn
    x, y = torch.randn(2, 3, 64), torch.randn(2, 3, 64)
    with torch.no_grad():
        assert torch.allclose(attn.q_proj(x), ref.q_proj(x), atol=1e-6)
        assert torch.allclose(attn.k_proj(y), ref.k_proj(y), atol=1e-6)   # a different input: no stale reuse
        y.mul_(2)                                                          # same object, modified in place
        assert torch.allclose(attn.v_proj(y), ref.v_proj(y), atol=1e-6)
        assert torch.allclose(attn.k_proj(x), ref.k_proj(x), atol=1e-6)


def test_llama_onnx_fuses_into_matmul_and_split(tmp_path):
    case = tiny_case("llama")
    expected = case.run().logits
    path = graphpress.export_onnx(case.model, tmp_path / "llama.onnx", example_inputs=case.inputs,
                                  example_kwargs=case.call_kwargs)
    ids = case.inputs["input_ids"]
    out, report = graphpress.optimize(path, "fuse-qkv,fuse-gate-up", example_inputs=(ids,), return_report=True)
    assert [r.stats["groups_fused"] for r in report.records] == [2, 2]
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Split") == 4
    original = graphpress.load_onnx(path)
    assert sum(n.op == "Linear" for n in graphpress.load_onnx(out).nodes) == sum(n.op == "Linear" for n in original.nodes) - 6
    assert [o.name for o in out.graph.output] == [o.name for o in original.outputs]
    assert _rel(_ort(out, ids), expected) <= 1e-5


class TwoHeads(nn.Module):
    """Two classifier heads on one feature (one with a bias, one without): siblings, but not qkv/gate-up."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(12, 16)
        self.cls, self.box = nn.Linear(16, 5), nn.Linear(16, 4, bias=False)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.cls(h), self.box(h)


def test_generic_siblings_only_fused_by_fuse_siblings(tmp_path):
    model, x = TwoHeads().eval(), torch.randn(3, 12)
    with torch.no_grad():
        expected = model(x)
    out, report = graphpress.optimize(model, "fuse-qkv,fuse-gate-up", example_inputs=(x,), return_report=True)
    assert not any(r.modified for r in report.records)
    assert [r.stats["groups_skipped"] for r in report.records] == [1, 1]
    out = graphpress.optimize(model, "fuse-siblings", example_inputs=(x,))
    assert isinstance(out.cls, SiblingSlice) and out.fused_cls_box.bias is not None
    with torch.no_grad():
        for a, e in zip(out(x), expected):
            assert _rel(a, e) <= 1e-5
    path = graphpress.export_onnx(model, tmp_path / "heads.onnx", example_inputs=(x,))
    proto = graphpress.optimize(path, "fuse-siblings", example_inputs=(x,))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for a, e in zip(session.run(None, {session.get_inputs()[0].name: x.numpy()}), expected):
        assert _rel(a, e) <= 1e-5


def test_inplace_fuses_the_users_model():
    case = tiny_case("llama")
    model = case.model
    out = graphpress.optimize(model, "fuse-gate-up", example_inputs=case.inputs, example_kwargs=case.call_kwargs,
                              inplace=True)
    assert out is model and isinstance(model.model.layers[1].mlp.up_proj, SiblingSlice)


def test_fused_siblings_compile_into_one_graph_with_one_product_per_fusion():
    # torch.compile traces the sharing without graph breaks (the eager cache keys on id/_version, which
    # a traced tensor does not have), and the graph holds one linear per fused group.
    import torch._dynamo as dynamo

    case = tiny_case("llama")
    model = case.model.eval()
    fused = graphpress.optimize(model, "fuse-qkv,fuse-gate-up", example_inputs=case.inputs,
                                example_kwargs=case.call_kwargs)
    explained = dynamo.explain(lambda **kw: fused(**kw, **case.call_kwargs).logits)(**case.inputs)
    assert explained.graph_break_count == 0
    linears = sum(1 for node in explained.graphs[0].graph.nodes if "linear" in str(node.target))
    assert linears == 4 * model.config.num_hidden_layers + 1  # qkv, o, gate_up, down per layer; lm_head
    with torch.no_grad():
        compiled = torch.compile(lambda **kw: fused(**kw, **case.call_kwargs).logits)
        torch.testing.assert_close(compiled(**case.inputs), _logits(model, case), rtol=1e-4, atol=1e-5)


def test_fused_projections_quantize_as_one_layer_and_unfuse_to_the_unfused_result():
    """fuse-qkv/fuse-gate-up before quantize: each fused weight is quantized as one layer (rows are quantized
    independently, so RTN gives the unfused codes), the siblings follow the swapped module, and
    unfuse_linears gives back one quantized layer per projection with the unfused state_dict."""
    from graphpress.quantization import QuantizedLinear

    case = tiny_case("llama")
    kw = dict(example_inputs=case.inputs, example_kwargs=case.call_kwargs)
    unfused = graphpress.optimize(case.model, "quantize{bits=4,group=32}", **kw)
    fused, report = graphpress.optimize(case.model, "fuse-qkv,fuse-gate-up,quantize{bits=4,group=32}",
                                        return_report=True, **kw)
    assert report.records[-1].stats["layers"] == 8  # qkv, o, gate_up, down in each of 2 layers (lm_head float)
    attn = fused.model.layers[0].self_attn
    assert isinstance(attn.fused_q_proj_k_proj_v_proj, QuantizedLinear)
    assert attn.fused_q_proj_k_proj_v_proj.split_sizes == [64, 32, 32]
    assert attn.q_proj.fused is attn.fused_q_proj_k_proj_v_proj  # the slices read the quantized module
    assert torch.equal(_logits(fused, case), _logits(unfused, case))
    copied = copy.deepcopy(fused)
    assert copied.model.layers[0].self_attn.q_proj.fused is copied.model.layers[0].self_attn.fused_q_proj_k_proj_v_proj
    assert unfuse_linears(fused) == 10
    assert sorted(fused.state_dict()) == sorted(unfused.state_dict())
    assert isinstance(fused.model.layers[0].self_attn.k_proj, QuantizedLinear)
    assert torch.equal(_logits(fused, case), _logits(unfused, case))
    assert torch.equal(_logits(copied, case), _logits(unfused, case))  # the copy is independent of the original


def test_gptq_quantizes_a_fused_projection_like_its_siblings():
    """GPTQ's Hessian is the shared input's, so quantizing the fused weight equals quantizing the stacked
    siblings (what GPTQ already does for linears that read one input)."""
    case = tiny_case("llama")
    kw = dict(example_inputs=case.inputs, example_kwargs=case.call_kwargs, calibration=case.inputs["input_ids"])
    unfused = graphpress.optimize(case.model, "quantize{bits=4,group=32,method=gptq}", **kw)
    fused, report = graphpress.optimize(case.model, "fuse-qkv,quantize{bits=4,group=32,method=gptq}",
                                        return_report=True, **kw)
    assert report.records[-1].stats["fallback_rtn"] == 0
    assert _rel(_logits(fused, case), _logits(unfused, case)) <= 1e-5


def test_fusing_after_quantize_says_it_left_the_quantized_siblings_alone(caplog):
    case = tiny_case("llama")
    _, report = graphpress.optimize(case.model, "quantize{bits=4,group=32},fuse-qkv", return_report=True,
                                    example_inputs=case.inputs, example_kwargs=case.call_kwargs)
    stats = report.records[-1].stats
    assert stats["groups_fused"] == 0 and stats["quantized_groups_left"] == 4  # q/k/v and gate/up of 2 layers
    assert "run the fusion passes before quantize" in caplog.text


def test_a_fused_model_survives_torch_save_and_load():
    """Pickling keeps the siblings' link to the module at the fused path (and drops their per-call cache)."""
    import io

    case = tiny_case("llama")
    model = graphpress.optimize(case.model, "fuse-qkv,fuse-gate-up,quantize{bits=4,group=32}",
                                example_inputs=case.inputs, example_kwargs=case.call_kwargs)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    attn = loaded.model.layers[0].self_attn
    assert attn.q_proj.fused is attn.fused_q_proj_k_proj_v_proj
    assert torch.equal(_logits(loaded, case), _logits(model, case))
