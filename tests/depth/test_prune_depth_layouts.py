"""prune-depth drops layers of any one-stream layout (not only Llama-style ones); stage lists are refused."""

from __future__ import annotations

import pytest
import torch

import graphpress
from graphpress.errors import GraphpressError


def test_prune_depth_on_non_llama_layers():
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    config = OPTConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, ffn_dim=48, num_attention_heads=4,
                       max_position_embeddings=32, word_embed_proj_dim=32)
    model = OPTForCausalLM(config).eval()
    tokens = torch.randint(0, 64, (2, 8))
    pruned = graphpress.optimize(model, "prune-depth{layers=1,samples=2}", example_inputs=(tokens,),
                                 calibration=torch.randint(0, 64, (2, 8)))
    assert len(pruned.model.decoder.layers) == pruned.config.num_hidden_layers == 2
    assert pruned(tokens).logits.shape == model(tokens).logits.shape


def test_prune_depth_refuses_stages():
    from graphpress.testing.arch_zoo import arch_case
    from graphpress.testing.zoo_checks import optimize_kwargs, random_calibration

    case = arch_case("convnext")
    with pytest.raises(GraphpressError, match="changes the shape of the hidden states"):
        graphpress.optimize(case.model, "prune-depth{layers=1}", calibration=random_calibration(case),
                            **optimize_kwargs(case))
