"""Ops the third architecture sweep (vision-language, detection, speech models) found without lowering rules or
handled wrongly: run-time checks of tensors, None in the output structure, ``masked_scatter``, ``index_put``,
``any``/``all`` and boolean-mask indexing. Each result is compared with torch through onnxruntime."""

from __future__ import annotations

import pytest
import torch

import graphpress
from graphpress.backends.onnx import run_onnxruntime, to_onnx
from graphpress.errors import DataDependentError
from graphpress.frontends.torch_export import trace


def _onnx_outputs(model: torch.nn.Module, *inputs: torch.Tensor) -> list[torch.Tensor]:
    return [torch.as_tensor(t) for t in run_onnxruntime(to_onnx(trace(model, inputs)), inputs)]


def _seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class _ImageIntoText(torch.nn.Module):
    """What LLaVA-style models do: check as many image features as image tokens (``torch._check_tensor_all``,
    Hugging Face's ``torch_compilable_check`` while tracing), then put the projected features into the token
    embeddings with ``masked_scatter``."""

    def __init__(self, vocab: int = 16, width: int = 8, image_id: int = 15) -> None:
        super().__init__()
        self.image_id = image_id
        self.embed = torch.nn.Embedding(vocab, width)
        self.project = torch.nn.Linear(4, width)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        embeds = self.embed(ids)
        features = self.project(pixels).reshape(-1, embeds.shape[-1])
        mask = (ids == self.image_id).unsqueeze(-1).expand_as(embeds)
        torch._check_tensor_all(mask.sum() == features.numel())
        return self.head(embeds.masked_scatter(mask, features))


def _image_prompt() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[15, 15, 1, 2, 3, 15], [4, 15, 15, 15, 5, 6]])
    return ids, _seeded(2, 3, 4)


def test_runtime_checks_of_tensors_are_left_out_of_the_graph() -> None:
    graph = trace(_ImageIntoText().eval(), _image_prompt())  # raised on aten._is_all_true before
    ops = {node.op for node in graph.nodes}
    assert not ops & {"_is_all_true", "item", "sym_ite", "_assert_scalar"}


def test_masked_scatter_of_whole_rows_matches_torch_and_keeps_the_channel_axis() -> None:
    model = _ImageIntoText().eval()
    inputs = _image_prompt()
    got = _onnx_outputs(model, *inputs)[0]
    assert torch.allclose(got, model(*inputs), atol=1e-5)
    # a per-token mask gathers whole rows of the features (6 rows of 8 channels), not single elements
    graph = trace(model, inputs)
    gathers = [node for node in graph.nodes if node.op == "Gather" and "masked_scatter" in node.meta.get("aten", "")]
    assert [tuple(node.inputs[0].shape) for node in gathers] == [(6, 8)]
    pruned = graphpress.optimize(model, "prune-channels{ratio=0.3,round_to=1}", example_inputs=inputs)
    assert pruned.embed.weight.shape[1] == pruned.project.weight.shape[0] < 8  # one coupled hidden width
    assert pruned(*inputs).shape == model(*inputs).shape


def test_masked_scatter_of_single_elements_matches_torch() -> None:
    class Elementwise(torch.nn.Module):
        def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
            return x.masked_scatter(x > 0.5, source * 2)

    x, source = _seeded(3, 5), _seeded(20, seed=1)
    assert torch.allclose(_onnx_outputs(Elementwise(), x, source)[0], Elementwise()(x, source))


def test_none_in_the_output_structure_is_no_output() -> None:
    class WithNones(torch.nn.Module):
        def forward(self, x: torch.Tensor):
            return {"logits": x * 2, "hidden": (x + 1, None), "extra": None}

    graph = trace(WithNones(), (torch.ones(2, 3),))  # raised "model output ... is not a tensor (NoneType)"
    assert len(graph.outputs) == 2


def test_index_put_with_a_boolean_row_mask_and_with_integer_indices_matches_torch() -> None:
    class Writes(torch.nn.Module):
        def forward(self, embeds, mask, image, rows, cols, values):
            embeds = embeds.clone()
            embeds[mask] = image.reshape(-1, embeds.shape[-1])  # Kosmos-2's image embeddings
            scalar = embeds.clone()
            scalar[mask] = 5.0
            table = torch.zeros(5, 4, 3)
            table[rows, cols] = values
            return embeds, scalar, table, torch.zeros(5, 3).index_put((rows,), values, accumulate=True)

    mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    inputs = (_seeded(2, 4, 3), mask, _seeded(5, 3, seed=1), torch.tensor([0, -1, 0]), torch.tensor([1, 3, 1]),
              _seeded(3, 3, seed=2))
    for got, want in zip(_onnx_outputs(Writes(), *inputs), Writes()(*inputs)):
        assert torch.allclose(got, want, atol=1e-6)


def test_any_and_all_match_torch() -> None:
    class Flags(torch.nn.Module):  # SmolVLM's padding-image test, Mllama's cross-attention row mask
        def forward(self, x: torch.Tensor):
            return x.any(), (x > 0).all(-1), x.any(dim=(0, 2), keepdim=True), (x > 0).all(), (x > 0).any(1)

    x = _seeded(2, 3, 4)
    x[0, 1] = 0.0
    for got, want in zip(_onnx_outputs(Flags(), x), Flags()(x)):
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_where_between_boolean_masks_runs_in_onnxruntime() -> None:
    class Choose(torch.nn.Module):  # SmolVLM's padding-image masks: onnxruntime has no boolean Where
        def forward(self, x: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
            return torch.where(flag, x > 0, x < -0.5)

    x, flag = _seeded(3, 4), torch.tensor([True, False, True, False])
    (got,) = _onnx_outputs(Choose(), x, flag)
    assert got.dtype == torch.bool and torch.equal(got, Choose()(x, flag))


def test_indexing_with_a_boolean_mask_takes_the_count_from_the_example() -> None:
    class Select(torch.nn.Module):  # SmolVLM keeps the real images of a padded batch: pixel_values[mask]
        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return x[mask].sum(0), x[:, mask[:3]] * 2

    x, mask = _seeded(4, 3), torch.tensor([True, False, True, True])
    with pytest.warns(UserWarning, match="data-sized index"):
        got = _onnx_outputs(Select(), x, mask)
    for g, w in zip(got, Select()(x, mask)):
        assert torch.allclose(g, w, atol=1e-6)
    with pytest.raises(DataDependentError, match="size depends on the data"):
        trace(Select(), (x, mask), specialise_values=False)


def test_integer_floor_division_matches_torch() -> None:
    class Lengths(torch.nn.Module):  # Speech2Text's lengths after its strided convolutions
        def forward(self, lengths: torch.Tensor, divisors: torch.Tensor):
            return (lengths - 1) // 2 + 1, torch.div(lengths, divisors, rounding_mode="floor")

    lengths, divisors = torch.tensor([-7, -6, -1, 0, 1, 5, 6, 7]), torch.tensor([2, -2, 3, -3, 2, -2, 3, -4])
    for got, want in zip(_onnx_outputs(Lengths(), lengths, divisors), Lengths()(lengths, divisors)):
        assert torch.equal(got, want)


class _Deformable(torch.nn.Module):
    """Multi-scale deformable attention in miniature: sample a feature map at offsets a linear predicts."""

    def __init__(self, mode: str = "bilinear", padding: str = "zeros", align: bool = False) -> None:
        super().__init__()
        self.options = dict(mode=mode, padding_mode=padding, align_corners=align)
        self.value = torch.nn.Conv2d(3, 16, 1)
        self.offsets = torch.nn.Linear(16, 5 * 2)
        self.out = torch.nn.Linear(16, 4)

    def forward(self, image: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        grid = self.offsets(queries).tanh().reshape(queries.shape[0], -1, 5, 2)  # (N, Q, points, xy)
        sampled = torch.nn.functional.grid_sample(self.value(image), grid * 1.2, **self.options)  # N, C, Q, 5
        return self.out(sampled.mean(-1).transpose(1, 2))


@pytest.mark.parametrize("options", [("bilinear", "zeros", False), ("nearest", "border", True),
                                     ("bicubic", "reflection", False)])
def test_grid_sample_matches_torch(options: tuple) -> None:
    model = _Deformable(*options).eval()
    inputs = (_seeded(2, 3, 6, 7), _seeded(2, 4, 16, seed=1))
    assert torch.allclose(_onnx_outputs(model, *inputs)[0], model(*inputs), atol=1e-5)


def test_grid_sample_prunes_the_sampled_channels_and_keeps_the_sampling_positions() -> None:
    model = _Deformable().eval()
    inputs = (_seeded(2, 3, 6, 7), _seeded(2, 4, 16, seed=1))
    pruned = graphpress.optimize(model, "prune-channels{ratio=0.3,round_to=1}", example_inputs=inputs)
    assert pruned.value.out_channels < 16 and pruned.out.in_features == pruned.value.out_channels
    assert pruned.offsets.out_features == 10  # x, y of 5 points: positions, not channels
    assert pruned(*inputs).shape == model(*inputs).shape


def test_arithmetic_of_booleans_is_logic() -> None:
    class Valid(torch.nn.Module):  # Mask2Former: (points > 0) * (points < 1)
        def forward(self, x: torch.Tensor):
            low, high = x > 0, x < 1
            return low * high, low + high, torch.maximum(low, high), torch.minimum(low, high)

    x = _seeded(3, 4)
    for got, want in zip(_onnx_outputs(Valid(), x), Valid()(x)):
        assert got.dtype == torch.bool and torch.equal(got, want)


def test_flip_cummax_and_cummin_match_torch() -> None:
    class Spans(torch.nn.Module):  # Grounding-DINO's spans between special tokens; Speech2Text's flipped cumsum
        def forward(self, x: torch.Tensor, special: torch.Tensor):
            ids = torch.where(special, torch.arange(special.shape[1]), torch.zeros_like(special, dtype=torch.long))
            before = torch.cummax(ids, dim=1)
            after = torch.flip(torch.cummin(torch.flip(ids + 100 * ~special, dims=[1]), dim=1)[0], dims=[1])
            return before[0], before[1], after, torch.cummax(x, 0)[0], torch.cummin(x, 1)[1], x.flip([0, -1])

    x = torch.tensor([[3.0, 1.0, 3.0, 0.5, 4.0, 4.0, -1.0], [0.0, 2.0, 2.0, 5.0, 1.0, 6.0, 6.0]])
    special = torch.tensor([[True, False, False, True, False, False, True], [False, True, False, False, True,
                                                                               False, False]])
    for got, want in zip(_onnx_outputs(Spans(), x, special), Spans()(x, special)):
        assert torch.equal(got, want)
