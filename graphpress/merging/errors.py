"""The refusals of checkpoint merging.

Merging reads several checkpoints that must agree tensor for tensor. Every disagreement found while
validating them (before anything is written) raises one of these, and the message names the tensor or
file at fault, so the user knows which checkpoint to fix. All derive from
:class:`graphpress.errors.GraphpressError`; bad options (an unknown method, a density out of range) raise
:class:`graphpress.errors.OptionError` instead.
"""

from __future__ import annotations

from graphpress.errors import GraphpressError

__all__ = [
    "MergeError",
    "IncompatibleModelsError",
    "MissingTensorError",
    "CorruptCheckpointError",
    "TokenizerMismatchError",
]


class MergeError(GraphpressError):
    """Base class of every refusal raised while merging checkpoints."""


class IncompatibleModelsError(MergeError):
    """The checkpoints are not the same architecture (config ``model_type`` or a tensor's shape differs)."""


class MissingTensorError(MergeError):
    """A tensor present in one checkpoint is absent from another, or an index names a missing shard."""


class CorruptCheckpointError(MergeError):
    """A safetensors file is truncated, has a malformed header, or its index json cannot be read."""


class TokenizerMismatchError(MergeError):
    """The checkpoints ship different tokenizers: merged embeddings would mix unrelated token rows."""
