"""finalize_module: after tensors were edited through the IR, modules' structural attributes follow,
inconsistent edits are refused, the user's class comes back, and extra fix-ups can be registered."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphpress.backends.torch_module import _FIXUPS, finalize_module, register_module_fixup
from graphpress.errors import BackendError
from graphpress.frontends.torch_export import export_onnx, trace
from graphpress.testing import TinyMobileNetV2, tiny_case


def _param(graph, key: str):
    return next(v for v in graph.parameters() if v.param.key == key).param


def test_pruned_mlp_gets_new_feature_counts_and_still_runs() -> None:
    case = tiny_case("llama")
    graph = trace(case.model, case.inputs)
    keep = torch.arange(0, 96, 2)  # half of the MLP channels of layer 0
    for key in ("gate_proj", "up_proj"):
        p = _param(graph, f"model.layers.0.mlp.{key}.weight")
        p.data = p.data[keep]
    down = _param(graph, "model.layers.0.mlp.down_proj.weight")
    down.data = down.data[:, keep]
    model = finalize_module(graph)
    assert type(model) is type(case.model)
    mlp = model.model.layers[0].mlp
    assert (mlp.gate_proj.out_features, mlp.up_proj.out_features, mlp.down_proj.in_features) == (48, 48, 48)
    with torch.no_grad():
        logits = model(**case.inputs, use_cache=False).logits
    assert logits.shape == (2, 8, 128) and torch.isfinite(logits).all()
    assert graph.find("Linear")[5].inputs[1].shape == (48, 64)  # the IR sees the new shapes too


def test_depthwise_conv_and_batchnorm_follow_a_channel_cut() -> None:
    model = TinyMobileNetV2().eval()
    graph = trace(model, (torch.randn(1, 3, 32, 32),))
    block = "features.3.block"  # InvertedResidual(8, 16, 8): expand conv 0, BN 1, depthwise conv 3, BN 4, project 6
    keep = torch.arange(12)
    for key in (f"{block}.0.weight", f"{block}.3.weight"):
        p = _param(graph, key)
        p.data = p.data[keep]
    for name in ("weight", "bias", "running_mean", "running_var"):
        for bn in (f"{block}.1", f"{block}.4"):
            p = _param(graph, f"{bn}.{name}")
            p.data = p.data[keep]
    project = _param(graph, f"{block}.6.weight")
    project.data = project.data[:, keep]
    (depthwise,) = [n for n in graph.find("Conv") if n.scope == f"{block}.3"]
    depthwise.attrs["group"] = 12
    out = finalize_module(graph)
    dw = out.features[3].block[3]
    assert (dw.in_channels, dw.out_channels, dw.groups) == (12, 12, 12)
    assert out.features[3].block[1].num_features == 12 and out.features[3].block[6].in_channels == 12
    assert out(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_gpt2_conv1d_nf_and_embedding_dims() -> None:
    case = tiny_case("gpt2")
    graph = trace(case.model, case.inputs)
    fc = next(n for n in graph.find("Linear") if n.scope == "transformer.h.0.mlp.c_fc")
    proj = next(n for n in graph.find("Linear") if n.scope == "transformer.h.0.mlp.c_proj")
    fc.inputs[1].param.data = fc.inputs[1].param.data[:100]  # IR layout [out, in]
    fc.inputs[2].param.data = fc.inputs[2].param.data[:100]
    proj.inputs[1].param.data = proj.inputs[1].param.data[:, :100]
    wte = _param(graph, "transformer.wte.weight")
    wte.data = wte.data[:120]
    model = finalize_module(graph)
    assert model.transformer.h[0].mlp.c_fc.nf == 100 and model.transformer.h[0].mlp.c_proj.nx == 100
    assert (model.transformer.wte.num_embeddings, model.transformer.wte.embedding_dim) == (120, 32)
    assert model.lm_head.out_features == 120  # tied to the embedding, so pruned with it
    with torch.no_grad():
        assert model(input_ids=case.inputs["input_ids"] % 120, use_cache=False).logits.shape == (2, 8, 120)


def test_inconsistent_edit_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    graph = trace(model, (torch.randn(3, 4),))
    weight = _param(graph, "0.weight")
    weight.data = weight.data[:5]  # the bias still has 6 entries
    with pytest.raises(BackendError, match="bias has"):
        finalize_module(graph)


def test_registered_fixup_sees_matching_modules() -> None:
    seen: list[str] = []
    count = len(_FIXUPS)

    @register_module_fixup(lambda m: isinstance(m, nn.ReLU))
    def record(module: nn.Module, path: str, graph) -> None:
        seen.append(path)

    try:
        model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU())
        finalize_module(trace(model, (torch.randn(1, 4),)))
        assert seen == ["1", "3"]
    finally:
        del _FIXUPS[count:]


def test_export_onnx_writes_a_loadable_file(tmp_path) -> None:
    import onnx

    from graphpress.backends.onnx import run_onnxruntime

    case = tiny_case("resnet")
    path = export_onnx(case.model, tmp_path / "resnet.onnx", example_inputs=case.inputs)
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    (out,) = run_onnxruntime(proto, {proto.graph.input[0].name: case.inputs[0]})
    expected = case.run()
    assert ((out - expected).abs().max() / expected.abs().max()).item() <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet.onnx"]  # no staging leftovers
