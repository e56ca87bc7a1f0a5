"""The corpus split of EVAL.md: halves by tokens, calibration stride 1024, consecutive evaluation windows."""

from __future__ import annotations

import pytest
import torch

from graphpress.errors import GraphpressError
from graphpress.eval import (
    calibration_windows,
    corpus_text,
    corpus_tokens,
    evaluation_sentences,
    evaluation_windows,
)


def test_corpus_is_the_sorted_pydoc_topics():
    from pydoc_data.topics import topics

    text = corpus_text()
    first = sorted(topics)[0]
    assert text.startswith(topics[first])
    assert len(text) > 100_000


def test_tokens_are_cached_per_tokenizer(char_tokenizer):
    assert corpus_tokens(char_tokenizer) is corpus_tokens(char_tokenizer)


def test_calibration_windows_stride_from_first_half(char_tokenizer):
    tokens = corpus_tokens(char_tokenizer)
    windows = calibration_windows(char_tokenizer, n_windows=3, seqlen=512)
    assert windows.dtype == torch.long and windows.shape == (3, 512)
    assert torch.equal(windows[1], tokens[1024:1536])
    assert torch.equal(windows[2], tokens[2048:2560])


def test_evaluation_windows_are_consecutive_in_second_half(char_tokenizer):
    tokens = corpus_tokens(char_tokenizer)
    middle = tokens.numel() // 2
    windows = evaluation_windows(char_tokenizer, n_windows=4, seqlen=64)
    assert windows.shape == (4, 64)
    assert torch.equal(windows.reshape(-1), tokens[middle : middle + 256])


def test_too_many_windows_is_a_clear_error(char_tokenizer):
    with pytest.raises(GraphpressError, match="tokens"):
        calibration_windows(char_tokenizer, n_windows=10_000)


def test_evaluation_sentences_come_from_second_half():
    sentences = evaluation_sentences()
    text = corpus_text()
    assert len(sentences) > 500
    assert all(len(s.split()) >= 4 for s in sentences)
    assert " ".join(text[len(text) // 2 :].split()).find(sentences[5]) >= 0
