"""Checkpoint merging: combine fine-tunes of one base model into a single model.

``merge_models(base, models, method=...)`` supports linear averaging, task arithmetic, TIES, DARE
(with TIES sign election or linear) and SLERP, streaming folders tensor by tensor and writing the
result atomically. New methods are added with the :func:`merge_method` decorator. The command-line
entry is :func:`graphpress.merging.cli.main_merge`.
"""

from __future__ import annotations

from graphpress.merging.errors import (
    CorruptCheckpointError,
    IncompatibleModelsError,
    MergeError,
    MissingTensorError,
    TokenizerMismatchError,
)
from graphpress.merging.merge import merge_models
from graphpress.merging.registry import (
    MergeContext,
    MergeMethod,
    available_merge_methods,
    get_merge_method,
    merge_method,
)

__all__ = [
    "merge_models",
    "merge_method",
    "get_merge_method",
    "available_merge_methods",
    "MergeContext",
    "MergeMethod",
    "MergeError",
    "IncompatibleModelsError",
    "MissingTensorError",
    "CorruptCheckpointError",
    "TokenizerMismatchError",
]
