"""Each merge method's arithmetic on tensors small enough to compute by hand, and the method registry."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from graphpress.errors import OptionError
from graphpress.merging import available_merge_methods, get_merge_method, merge_method, merge_models
from graphpress.merging.delta_ops import drop_and_rescale, slerp, trim_to_top_magnitude
from graphpress.merging.registry import _METHODS, MergeContext

BASE = torch.tensor([1.0, 1.0, 1.0, 1.0])
DELTA_1 = torch.tensor([3.0, -1.0, 2.0, 0.5])
DELTA_2 = torch.tensor([1.0, 2.0, -4.0, 0.5])


@pytest.fixture
def folders(make_tensor_folder):
    """Base and two fine-tunes holding one float tensor 'w' and an integer buffer 'ids'."""
    ids = torch.arange(3)
    return (
        make_tensor_folder("base", {"w": BASE, "ids": ids}),
        make_tensor_folder("one", {"w": BASE + DELTA_1, "ids": ids + 10}),
        make_tensor_folder("two", {"w": BASE + DELTA_2, "ids": ids + 20}),
    )


def merged(folders, tmp_path, **options) -> dict[str, torch.Tensor]:
    base, one, two = folders
    return load_file(str(merge_models(base, [one, two], output=tmp_path / "out", **options) / "model.safetensors"))


@pytest.mark.parametrize(
    "options, expected",
    [
        # (theta_1 + theta_2) / 2 = base + (d1 + d2) / 2
        ({"method": "linear"}, [3.0, 1.5, 0.0, 1.5]),
        # (1 * theta_1 + 3 * theta_2) / 4
        ({"method": "linear", "weights": [1, 3]}, [2.5, 2.25, -1.5, 1.5]),
        # base + 0.5 * (d1 + d2): equal to linear for two models
        ({"method": "task_arithmetic", "lambda_": 0.5}, [3.0, 1.5, 0.0, 1.5]),
        ({"method": "task_arithmetic", "weights": [1, -1]}, [3.0, -2.0, 7.0, 1.0]),
        # trim to top 2: [3,0,2,0] and [0,2,-4,0]; signs of the sum [+,+,-,0]; agreeing means [3,2,-4,0]
        ({"method": "ties", "density": 0.5}, [4.0, 3.0, -3.0, 1.0]),
        ({"method": "ties", "density": 0.5, "lambda_": 0.5}, [2.5, 2.0, -1.0, 1.0]),
        # no trimming: sum [4,1,-2,1]; agreeing: (3+1)/2, 2, -4, (0.5+0.5)/2
        ({"method": "ties", "density": 1.0}, [3.0, 3.0, -3.0, 1.5]),
        # weighted disjoint mean: (1*3 + 3*1) / 4 = 1.5 in entry 0
        ({"method": "ties", "density": 1.0, "weights": [1, 3]}, [2.5, 3.0, -3.0, 1.5]),
        # DARE at density 1 drops nothing: ties without trimming, and task arithmetic
        ({"method": "dare_ties", "density": 1.0}, [3.0, 3.0, -3.0, 1.5]),
        ({"method": "dare_linear", "density": 1.0}, [5.0, 2.0, -1.0, 2.0]),
    ],
)
def test_method_arithmetic(folders, tmp_path, options, expected):
    result = merged(folders, tmp_path, **options)
    torch.testing.assert_close(result["w"], torch.tensor(expected))
    # integer buffers are structural: the base's are kept whatever the method
    assert torch.equal(result["ids"], torch.arange(3))


def test_slerp_follows_the_arc_and_keeps_the_norm(make_tensor_folder, tmp_path):
    base = make_tensor_folder("base", {"w": torch.zeros(2)})
    east = make_tensor_folder("east", {"w": torch.tensor([2.0, 0.0])})
    north = make_tensor_folder("north", {"w": torch.tensor([0.0, 2.0])})
    out = merge_models(base, [east, north], method="slerp", output=tmp_path / "out")
    torch.testing.assert_close(
        load_file(str(out / "model.safetensors"))["w"], torch.tensor([math.sqrt(2), math.sqrt(2)])
    )
    # t = w2 / (w1 + w2) = 1/3: the angle splits 30 / 60 degrees
    third = slerp(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0]), 1 / 3)
    torch.testing.assert_close(third, torch.tensor([2 * math.cos(math.pi / 6), 2 * math.sin(math.pi / 6)]))
    # parallel vectors have no arc: plain interpolation
    torch.testing.assert_close(slerp(torch.tensor([1.0, 1.0]), torch.tensor([3.0, 3.0]), 0.5), torch.tensor([2.0, 2.0]))


def test_trim_keeps_the_largest_magnitudes_per_model():
    deltas = torch.stack([DELTA_1, DELTA_2])
    torch.testing.assert_close(trim_to_top_magnitude(deltas, 0.25), torch.tensor([[3.0, 0, 0, 0], [0, 0, -4.0, 0]]))


def test_dare_drops_at_the_given_rate_rescales_and_is_seeded():
    deltas = torch.ones(2, 20_000)
    context = MergeContext("layer.weight", density=0.3, seed=7)
    dropped = drop_and_rescale(deltas, 0.3, context.generators(2))
    kept = dropped != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.02
    torch.testing.assert_close(dropped[kept], torch.full((int(kept.sum()),), 1 / 0.3))
    # each model gets its own mask, the same on every run with the same seed and tensor name
    assert not torch.equal(kept[0], kept[1])
    assert torch.equal(dropped, drop_and_rescale(deltas, 0.3, context.generators(2)))
    other_seed = drop_and_rescale(deltas, 0.3, MergeContext("layer.weight", 0.3, seed=8).generators(2))
    assert not torch.equal(dropped, other_seed)


def test_dare_merge_is_reproducible_from_the_seed(make_tensor_folder, tmp_path):
    base = make_tensor_folder("base", {"w": torch.zeros(64)})
    one = make_tensor_folder("one", {"w": torch.linspace(-1, 1, 64)})
    two = make_tensor_folder("two", {"w": torch.linspace(1, -0.5, 64)})

    def dare(seed: int, name: str) -> torch.Tensor:
        out = merge_models(base, [one, two], method="dare_ties", density=0.5, seed=seed, output=tmp_path / name)
        return load_file(str(out / "model.safetensors"))["w"]

    assert torch.equal(dare(0, "a"), dare(0, "b"))
    assert not torch.equal(dare(0, "a"), dare(1, "c"))


def test_modules_merge_in_memory():
    torch.manual_seed(0)
    base, one, two = (torch.nn.Linear(3, 2) for _ in range(3))
    result = merge_models(base, [one, two], method="linear")
    assert isinstance(result, torch.nn.Linear) and result is not base
    torch.testing.assert_close(result.weight, (one.weight + two.weight) / 2)
    torch.testing.assert_close(result.bias, (one.bias + two.bias) / 2)


def test_a_new_method_takes_a_few_lines():
    @merge_method("test_take_first", on_deltas=True)
    def take_first(deltas, weights, context):
        """Keep only the first model's delta."""
        return deltas[0]

    try:
        assert available_merge_methods()["test_take_first"] == "Keep only the first model's delta."
        method = get_merge_method("test_take_first")
        result = method.apply(BASE, [BASE + DELTA_1, BASE + DELTA_2], torch.ones(2), MergeContext("w", None, 0), 2.0)
        torch.testing.assert_close(result, BASE + 2 * DELTA_1)
    finally:
        del _METHODS["test_take_first"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "average"}, "unknown merge method 'average'"),
        ({"method": "ties"}, "needs density"),
        ({"method": "ties", "density": 1.5}, "density must be in"),
        ({"method": "linear", "weights": [1.0]}, "1 weights given for 2 models"),
    ],
)
def test_bad_options_are_refused(folders, tmp_path, options, message):
    with pytest.raises(OptionError, match=message):
        merged(folders, tmp_path, **options)
    assert not (tmp_path / "out").exists()


def test_slerp_takes_exactly_two_models(folders, tmp_path):
    base, one, two = folders
    with pytest.raises(OptionError, match="exactly 2 models"):
        merge_models(base, [one, two, one], method="slerp", output=tmp_path / "out")


def test_normalising_methods_refuse_weights_summing_to_zero(folders, tmp_path):
    with pytest.raises(OptionError, match="sum of the weights"):
        merged(folders, tmp_path, method="linear", weights=[1, -1])
