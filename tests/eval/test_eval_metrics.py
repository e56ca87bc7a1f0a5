"""Perplexity equals exp(mean CE) over all positions; embedding cosine is 1 for identical models."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from graphpress.eval import embedding_cosine, perplexity


def test_perplexity_matches_hand_computed_cross_entropy(tiny_llama):
    torch.manual_seed(1)
    windows = torch.randint(0, 256, (3, 17))
    logits = tiny_llama(input_ids=windows).logits[:, :-1]
    expected = math.exp(F.cross_entropy(logits.reshape(-1, 256), windows[:, 1:].reshape(-1)).item())
    seen = []
    got = perplexity(tiny_llama, windows, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert abs(got - expected) / expected < 1e-5
    assert seen == [(2, 3), (3, 3)]


def test_perplexity_is_order_independent_of_batching(tiny_llama):
    windows = torch.randint(0, 256, (4, 9))
    assert abs(perplexity(tiny_llama, windows, batch_size=1) - perplexity(tiny_llama, windows, batch_size=4)) < 1e-6


def test_embedding_cosine_real_minilm_identity_and_perturbation():
    from graphpress.models import load_minilm

    model, tokenizer = load_minilm()
    sentences = ["The quick brown fox jumps.", "A list is a mutable sequence type.", "Hello"]
    assert abs(embedding_cosine(model, model, tokenizer, sentences) - 1.0) < 1e-6
    perturbed, _ = load_minilm()
    with torch.no_grad():
        for parameter in perturbed.encoder.layer[0].parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    assert embedding_cosine(model, perturbed, tokenizer, sentences) < 0.999
