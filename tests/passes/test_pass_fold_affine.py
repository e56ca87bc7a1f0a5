"""fold-affine: BatchNorm, constant per-channel Mul/Add and norm affines fold exactly, on torch and ONNX."""

import copy
from collections import Counter

import torch
from torch import nn

import graphpress
from graphpress.testing import max_relative_error as _rel
from graphpress.testing import run_onnx as _ort
from graphpress.testing.zoo import tiny_case


def _ops(model) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


class Affine(nn.Module):
    """A per-channel scale and shift kept as buffers (what LayerScale-like modules look like)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("scale", torch.rand(channels, 1, 1) + 0.5)
        self.register_buffer("shift", torch.randn(channels, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


class AffineCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.affine1 = Affine(8)
        self.conv2, self.affine2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), Affine(8)
        self.fc = nn.Linear(8, 5)
        self.gain = nn.Parameter(torch.rand(5) + 0.5)

    def forward(self, x):
        x = torch.relu(self.affine1(self.bn(self.conv1(x))))
        x = self.affine2(self.conv2(x)).mean((2, 3))
        return self.fc(x) * self.gain


def _cnn() -> AffineCNN:
    model = AffineCNN().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2.0)
    return model


def test_cnn_torch_folds_batchnorm_and_affine_modules_exactly():
    model, x = _cnn(), torch.randn(2, 3, 16, 16)
    before = copy.deepcopy(model.state_dict())
    out, report = graphpress.optimize(model, "fold-affine", example_inputs=(x,), return_report=True)
    assert type(out) is AffineCNN
    assert isinstance(out.bn, nn.Identity) and isinstance(out.affine1, nn.Identity) and isinstance(out.affine2, nn.Identity)
    stats = report.records[0].stats
    assert stats["batchnorms_folded"] == 1 and stats["into_producer"] >= 4 and stats["nodes_removed"] >= 5
    assert stats["parameters_removed"] > 0
    with torch.no_grad():
        assert _rel(out(x), model(x)) <= 1e-5
    # the user's model is untouched
    assert isinstance(model.bn, nn.BatchNorm2d) and isinstance(model.affine1, Affine)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cnn_onnx_folds_to_convs_only(tmp_path):
    model, x = _cnn(), torch.randn(2, 3, 16, 16)
    path = graphpress.export_onnx(model, tmp_path / "cnn.onnx", example_inputs=(x,))
    out, report = graphpress.optimize(path, "fold-affine,fold-constants,dce", example_inputs=(x,), return_report=True)
    ops = _ops(out)
    assert not ops["BatchNormalization"] and not ops["Mul"] and not ops["Add"], ops
    assert report.records[0].stats["parameters_removed"] > 0
    with torch.no_grad():
        assert _rel(_ort(out, x), model(x)) <= 1e-5


def test_spatial_mul_is_not_a_channel_affine(tmp_path):
    class Spatial(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.register_buffer("mask", torch.rand(1, 1, 8, 8))

        def forward(self, x):
            return self.conv(x) * self.mask

    model, x = Spatial().eval(), torch.randn(1, 3, 8, 8)
    path = graphpress.export_onnx(model, tmp_path / "s.onnx", example_inputs=(x,))
    out = graphpress.optimize(path, "fold-affine", example_inputs=(x,))
    assert _ops(out)["Mul"] == 1
    with torch.no_grad():
        assert _rel(_ort(out, x), model(x)) <= 1e-5


class NormHeads(nn.Module):
    """A LayerNorm whose output feeds only two Linears (one without bias)."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.a, self.b = nn.Linear(16, 8), nn.Linear(16, 12, bias=False)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.normal_()

    def forward(self, x):
        h = self.norm(x)
        return torch.cat([self.a(h), self.b(h)], dim=-1)


def test_layernorm_affine_folds_into_following_linears_torch_and_onnx(tmp_path):
    model, x = NormHeads().eval(), torch.randn(2, 5, 16)
    with torch.no_grad():
        expected = model(x)
    out, report = graphpress.optimize(model, "fold-affine", example_inputs=(x,), return_report=True)
    assert report.records[0].stats["norms_folded"] == 1
    assert torch.equal(out.norm.weight, torch.ones(16)) and torch.equal(out.norm.bias, torch.zeros(16))
    assert out.b.bias is not None  # W @ beta became a bias
    with torch.no_grad():
        assert _rel(out(x), expected) <= 1e-5
    assert not torch.equal(model.norm.weight, torch.ones(16))

    path = graphpress.export_onnx(model, tmp_path / "ln.onnx", example_inputs=(x,))
    proto = graphpress.optimize(path, "fold-affine", example_inputs=(x,))
    norms = [n for n in proto.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 1 and len([i for i in norms[0].input if i]) == 2  # its bias input is gone
    assert _rel(_ort(proto, x), expected) <= 1e-5


def _llama_with_norm_weights():
    case = tiny_case("llama")
    with torch.no_grad():
        for name, p in case.model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return case


def test_llama_rmsnorm_gamma_folds_into_projections_torch():
    case = _llama_with_norm_weights()
    expected = case.run().logits
    out, report = graphpress.optimize(case.model, "fold-affine", example_inputs=case.inputs,
                                      example_kwargs=case.call_kwargs, return_report=True)
    stats = report.records[0].stats
    assert stats["into_linears"] == 5  # 2 layers x (attention, MLP) + final norm -> lm_head
    assert type(out) is type(case.model)
    assert torch.equal(out.model.layers[0].input_layernorm.weight, torch.ones(64))
    assert not torch.equal(case.model.model.layers[0].input_layernorm.weight, torch.ones(64))
    with torch.no_grad():
        actual = out(**case.inputs, **case.call_kwargs).logits
    assert _rel(actual, expected) <= 1e-5


def test_llama_rmsnorm_gamma_folds_onnx(tmp_path):
    case = _llama_with_norm_weights()
    expected = case.run().logits
    path = graphpress.export_onnx(case.model, tmp_path / "llama.onnx", example_inputs=case.inputs,
                                  example_kwargs=case.call_kwargs)
    ids = case.inputs["input_ids"]
    out, report = graphpress.optimize(path, "fold-affine", example_inputs=(ids,), return_report=True)
    muls = [sum(n.op == "Mul" for n in graphpress.load_onnx(m).nodes) for m in (path, out)]
    assert muls[0] - muls[1] == 5
    assert report.records[0].stats["parameters_removed"] == 5 * 64
    assert _rel(_ort(out, ids), expected) <= 1e-5


def test_tied_weights_are_not_edited():
    case = tiny_case("llama_tied")
    with torch.no_grad():
        case.model.model.norm.weight.uniform_(0.5, 1.5)
    expected = case.run().logits
    out = graphpress.optimize(case.model, "fold-affine", example_inputs=case.inputs, example_kwargs=case.call_kwargs)
    assert out.lm_head.weight is out.model.embed_tokens.weight
    assert not torch.equal(out.model.norm.weight, torch.ones_like(out.model.norm.weight))  # lm_head is tied
    with torch.no_grad():
        assert _rel(out(**case.inputs, **case.call_kwargs).logits, expected) <= 1e-5


def test_inplace_edits_the_users_model():
    model, x = _cnn(), torch.randn(1, 3, 16, 16)
    out = graphpress.optimize(model, "fold-affine", example_inputs=(x,), inplace=True)
    assert out is model and isinstance(model.affine1, nn.Identity)
