"""AWQ/SmoothQuant fold scales only where the fold is proven exact on the block's calibration inputs."""

from __future__ import annotations

import torch
from torch import nn

from graphpress.quantization.scaling import exact_pairs, scaling_pairs


class Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(width, 16), nn.Linear(width, 16)
        self.down_proj = nn.Linear(16, width)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """A Llama-named block whose ``post_attention_layernorm`` sits where its name says (pre-MLP) or, with
    ``post_norm``, on the MLP's output (OLMo-2/Gemma-2 style), where folding into it changes the block."""

    def __init__(self, post_norm: bool, affine: bool = True):
        super().__init__()
        self.post_norm = post_norm
        self.post_attention_layernorm = nn.LayerNorm(8, elementwise_affine=affine)
        self.mlp = Mlp(8)

    def forward(self, x):
        if self.post_norm:
            return x + self.post_attention_layernorm(self.mlp(x))
        return x + self.mlp(self.post_attention_layernorm(x))


def run_on(x):
    return lambda block: [block(x)]


def test_exact_fold_is_kept():
    torch.manual_seed(0)
    block = Block(post_norm=False)
    pairs = scaling_pairs(block)
    assert [p.producer for p in exact_pairs(block, pairs, run_on(torch.randn(2, 5, 8)))] == \
        ["post_attention_layernorm", "mlp.up_proj"]


def test_misplaced_norm_is_dropped_and_block_untouched():
    torch.manual_seed(0)
    block = Block(post_norm=True)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    kept = exact_pairs(block, scaling_pairs(block), run_on(torch.randn(2, 5, 8)))
    assert [p.producer for p in kept] == ["mlp.up_proj"]
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())


def test_norm_without_weight_is_no_producer():
    assert [p.producer for p in scaling_pairs(Block(post_norm=False, affine=False))] == ["mlp.up_proj"]
