"""Checks that checkpoints can be merged, run before a single byte of output is written.

Merging tensor by tensor is only meaningful when every checkpoint is the same architecture with the
same tokenizer: same config ``model_type``, the same tensor names with the same shapes, and the same
token-to-row assignment of the embedding (two tokenizers of the same size still put different tokens
in row 17, and averaging those rows produces garbage silently). Each refusal names the offending
checkpoint and tensor or file. Dtypes may differ: the merge computes in float32 and writes the base's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from graphpress.merging.checkpoints import Checkpoint
from graphpress.merging.errors import (
    CorruptCheckpointError,
    IncompatibleModelsError,
    MissingTensorError,
    TokenizerMismatchError,
)

__all__ = ["check_mergeable", "read_vocabulary"]

# How many offending names a message lists before summarising the rest as a count.
_NAMES_SHOWN = 5


def check_mergeable(base: Checkpoint, models: Sequence[Checkpoint]) -> None:
    """Raise a :class:`~graphpress.merging.errors.MergeError` subclass unless all checkpoints match ``base``."""
    base_vocabulary = read_vocabulary(base.folder) if base.folder is not None else None
    for model in models:
        _check_model_type(base, model)
        _check_tensors(base, model)
        if base_vocabulary is not None and model.folder is not None:
            model_vocabulary = read_vocabulary(model.folder)
            if model_vocabulary is not None:
                _check_vocabulary(base, base_vocabulary, model, model_vocabulary)


def _check_model_type(base: Checkpoint, model: Checkpoint) -> None:
    if base.config is None or model.config is None:
        return
    base_type, model_type = base.config.get("model_type"), model.config.get("model_type")
    if base_type != model_type:
        raise IncompatibleModelsError(
            f"{model.label} is model_type '{model_type}' but the base {base.label} is '{base_type}'"
        )


def _check_tensors(base: Checkpoint, model: Checkpoint) -> None:
    missing = [name for name in base.infos if name not in model.infos]
    if missing:
        raise MissingTensorError(
            f"{model.label} lacks {len(missing)} tensors of the base {base.label}: {_summarise(missing)}"
        )
    extra = [name for name in model.infos if name not in base.infos]
    if extra:
        raise MissingTensorError(
            f"{model.label} has {len(extra)} tensors absent from the base {base.label}: {_summarise(extra)}"
        )
    for name, base_info in base.infos.items():
        model_info = model.infos[name]
        if model_info.shape != base_info.shape:
            raise IncompatibleModelsError(
                f"tensor '{name}' is {list(model_info.shape)} in {model.label} "
                f"but {list(base_info.shape)} in the base {base.label}"
            )
        if model_info.dtype.is_floating_point != base_info.dtype.is_floating_point:
            raise IncompatibleModelsError(
                f"tensor '{name}' is {model_info.dtype} in {model.label} but {base_info.dtype} in the base"
            )


def _check_vocabulary(
    base: Checkpoint, base_vocabulary: dict[str, int], model: Checkpoint, model_vocabulary: dict[str, int]
) -> None:
    if base_vocabulary == model_vocabulary:
        return
    for token, index in base_vocabulary.items():
        if model_vocabulary.get(token) != index:
            raise TokenizerMismatchError(
                f"the tokenizer of {model.label} differs from the base {base.label}: token {token!r} is id "
                f"{index} in the base but {model_vocabulary.get(token)} there "
                f"(vocabularies of {len(base_vocabulary)} and {len(model_vocabulary)} tokens)"
            )
    added = [token for token in model_vocabulary if token not in base_vocabulary]
    raise TokenizerMismatchError(
        f"the tokenizer of {model.label} has {len(added)} tokens the base {base.label} lacks: {_summarise(added)}"
    )


def read_vocabulary(folder: Path) -> dict[str, int] | None:
    """Token -> id of a folder's tokenizer (tokenizer.json, vocab.json or vocab.txt), or None if it has none."""
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        content = _load_json(tokenizer_json)
        vocab = (content.get("model") or {}).get("vocab", {})
        # Unigram models list [piece, score] pairs, where the id is the position; the others map piece -> id.
        vocabulary = (
            {piece: index for index, (piece, _score) in enumerate(vocab)} if isinstance(vocab, list) else dict(vocab)
        )
        for added in content.get("added_tokens") or []:
            vocabulary[added["content"]] = added["id"]
        return vocabulary
    if (folder / "vocab.json").is_file():
        return dict(_load_json(folder / "vocab.json"))
    if (folder / "vocab.txt").is_file():
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        return {token: index for index, token in enumerate(lines)}
    return None


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"{path}: cannot be read as JSON ({error})") from error


def _summarise(names: list[str]) -> str:
    shown = ", ".join(f"'{name}'" for name in names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")
