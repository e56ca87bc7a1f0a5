"""ModuleBinding: a pass's edit reaches the user's module, and caches the module derived from the old tensor go."""

from __future__ import annotations

import torch
from torch import nn

from graphpress.ir.parameter import ModuleBinding


class _CachedBias(nn.Module):
    """timm's pattern (LeViT, TinyViT): a per-head bias gathered once in eval mode and cached in a dict."""

    def __init__(self, heads: int = 4, tokens: int = 6) -> None:
        super().__init__()
        self.attention_biases = nn.Parameter(torch.randn(heads, tokens))
        self.register_buffer("index", torch.randint(0, tokens, (tokens, tokens)), persistent=False)
        self.attention_bias_cache: dict[str, torch.Tensor] = {}
        self.names = {"unrelated": "kept"}  # not tensors: not a cache of them

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if self.training:
            return scores + self.attention_biases[:, self.index]
        if "cpu" not in self.attention_bias_cache:
            self.attention_bias_cache["cpu"] = self.attention_biases[:, self.index]
        return scores + self.attention_bias_cache["cpu"]


def test_replacing_a_parameter_drops_tensor_caches_derived_from_it() -> None:
    module = _CachedBias().eval()
    with torch.no_grad():
        module(torch.zeros(4, 6, 6))  # fills the cache with 4 heads
    binding = ModuleBinding(module, "attention_biases")
    binding.set(module.attention_biases.detach()[:3])  # a head pruned
    assert module.attention_bias_cache == {} and module.names == {"unrelated": "kept"}
    assert isinstance(module.attention_biases, nn.Parameter) and module._parameters  # parameters untouched
    with torch.no_grad():
        out = module(torch.zeros(3, 6, 6))  # with the stale cache: a 4-head bias, a broadcast error
    assert torch.equal(out, module.attention_biases.detach()[:, module.index])
