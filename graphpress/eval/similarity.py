"""Embedding fidelity of a compressed encoder: mean cosine between its sentence embeddings and the original's.

This is EVAL.md's quality figure for embedding models such as all-MiniLM-L6-v2: sentences are embedded by
attention-masked mean pooling of the last hidden state (what sentence-transformers does for that model),
and the cosine of each compressed embedding to its reference is averaged over the sentences.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

__all__ = ["mean_pooled_embeddings", "embedding_cosine"]


@torch.no_grad()
def mean_pooled_embeddings(
    model: Any, tokenizer: Any, sentences: Sequence[str], *, batch_size: int = 32, max_length: int = 256
) -> torch.Tensor:
    """``[len(sentences), hidden]`` float32 mean-pooled last hidden states (padding excluded)."""
    device = next(model.parameters()).device
    # Batch sentences of similar length together so little compute goes to padding; order restored below.
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    chunks = []
    for start in range(0, len(order), batch_size):
        batch = tokenizer(
            [sentences[i] for i in order[start : start + batch_size]],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        chunks.append(((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)).cpu())
    embeddings = torch.empty_like(torch.cat(chunks))
    embeddings[torch.tensor(order)] = torch.cat(chunks)
    return embeddings


def embedding_cosine(
    reference_model: Any,
    model: Any,
    tokenizer: Any,
    sentences: Sequence[str],
    *,
    max_sentences: int = 512,
    batch_size: int = 32,
) -> float:
    """Mean cosine similarity of ``model``'s sentence embeddings to ``reference_model``'s.

    Uses the first ``max_sentences`` sentences so the figure is deterministic and quick on a CPU.
    """
    chosen = list(sentences[:max_sentences])
    if not chosen:
        raise ValueError("embedding_cosine needs at least one sentence")
    reference_model.eval()  # not chained: a module's train() override may return None (timm's attention)
    model.eval()
    reference = mean_pooled_embeddings(reference_model, tokenizer, chosen, batch_size=batch_size)
    compressed = mean_pooled_embeddings(model, tokenizer, chosen, batch_size=batch_size)
    return F.cosine_similarity(reference.double(), compressed.double(), dim=-1).mean().item()
