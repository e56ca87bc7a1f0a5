"""The evaluation text of EVAL.md: CPython's ``pydoc_data.topics`` prose, split in half by tokens.

Every quality figure in graphpress is measured on this corpus, because it ships with Python (nothing to
download) and is long enough (~113k SmolLM2 tokens) for both calibration and evaluation:

* corpus = ``"\\n\\n".join(topics[k] for k in sorted(topics))``, tokenized once per tokenizer (cached);
* the first half of the tokens is for calibration: 512-token windows starting at 0, step 1024;
* the second half is for evaluation: its first 16 consecutive 512-token windows;
* for embedding models, the evaluation half of the *text* split into sentences.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import torch

from graphpress.errors import GraphpressError

__all__ = [
    "corpus_text",
    "corpus_tokens",
    "calibration_windows",
    "evaluation_windows",
    "evaluation_sentences",
    "calibration_sentences",
]

CALIBRATION_STEP = 1024


@lru_cache(maxsize=1)
def corpus_text() -> str:
    """The whole corpus as one string, topics in sorted key order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


# Keyed by the tokenizer object's identity; a handful of tokenizers live in one process at most.
_TOKEN_CACHE: dict[int, tuple[Any, torch.Tensor]] = {}


def corpus_tokens(tokenizer: Any) -> torch.Tensor:
    """The corpus as a 1-D LongTensor of token ids (no special tokens), tokenized once per tokenizer."""
    cached = _TOKEN_CACHE.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    ids = tokenizer(corpus_text(), add_special_tokens=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.long)
    # Keep the tokenizer referenced next to its tokens so its id cannot be reused by another object.
    _TOKEN_CACHE[id(tokenizer)] = (tokenizer, tokens)
    return tokens


def _halves(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = corpus_tokens(tokenizer)
    middle = tokens.numel() // 2
    return tokens[:middle], tokens[middle:]


def _check_fits(name: str, n_windows: int, needed: int, available: int) -> None:
    if n_windows < 1:
        raise GraphpressError(f"{name}: n_windows must be >= 1, got {n_windows}")
    if needed > available:
        raise GraphpressError(
            f"{name}: {n_windows} windows need {needed} tokens but the corpus half has {available}"
        )


def calibration_windows(tokenizer: Any, n_windows: int = 32, seqlen: int = 512) -> torch.Tensor:
    """``[n_windows, seqlen]`` token windows from the first half, starting at 0 with a step of 1024."""
    first, _ = _halves(tokenizer)
    step = max(CALIBRATION_STEP, seqlen)
    _check_fits("calibration_windows", n_windows, (n_windows - 1) * step + seqlen, first.numel())
    return torch.stack([first[i * step : i * step + seqlen] for i in range(n_windows)])


def evaluation_windows(tokenizer: Any, n_windows: int = 16, seqlen: int = 512) -> torch.Tensor:
    """``[n_windows, seqlen]``: the first ``n_windows`` consecutive windows of the second half."""
    _, second = _halves(tokenizer)
    _check_fits("evaluation_windows", n_windows, n_windows * seqlen, second.numel())
    return second[: n_windows * seqlen].reshape(n_windows, seqlen).clone()


def _sentences(text: str, min_words: int, starts_mid_sentence: bool) -> tuple[str, ...]:
    # Split on sentence ends and blank lines; a piece cut at its start by the halving is dropped.
    pieces = re.split(r"(?<=[.?!])\s+|\n\s*\n", text)[1 if starts_mid_sentence else 0 :]
    sentences = (" ".join(piece.split()) for piece in pieces)
    return tuple(s for s in sentences if len(s.split()) >= min_words)


@lru_cache(maxsize=4)
def evaluation_sentences(min_words: int = 4) -> tuple[str, ...]:
    """Sentences of the second half of the corpus text (by characters), for embedding models.

    Sentences are split on ``.``/``?``/``!`` followed by whitespace and on blank lines; fragments with
    fewer than ``min_words`` words (headings, code crumbs) are dropped because their embeddings say little.
    """
    text = corpus_text()
    return _sentences(text[len(text) // 2 :], min_words, starts_mid_sentence=True)


@lru_cache(maxsize=4)
def calibration_sentences(min_words: int = 4) -> tuple[str, ...]:
    """Sentences of the first half of the corpus text: calibration data for embedding models."""
    text = corpus_text()
    return _sentences(text[: len(text) // 2], min_words, starts_mid_sentence=False)
