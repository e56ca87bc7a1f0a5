"""The measurement protocol of EVAL.md: the corpus, perplexity and embedding similarity."""

from graphpress.eval.corpus import (
    calibration_sentences,
    calibration_windows,
    corpus_text,
    corpus_tokens,
    evaluation_sentences,
    evaluation_windows,
)
from graphpress.eval.memory import PeakResidentMemory, resident_bytes
from graphpress.eval.perplexity import perplexity, window_losses
from graphpress.eval.similarity import embedding_cosine, mean_pooled_embeddings

__all__ = [
    "PeakResidentMemory",
    "resident_bytes",
    "calibration_sentences",
    "calibration_windows",
    "corpus_text",
    "corpus_tokens",
    "evaluation_sentences",
    "evaluation_windows",
    "perplexity",
    "window_losses",
    "embedding_cosine",
    "mean_pooled_embeddings",
]
