"""Uniform read access to the checkpoints being merged: a Hugging Face folder or an ``nn.Module``.

A folder is read lazily: only the safetensors headers (names, dtypes, shapes) are parsed up front, and
each tensor is read on demand through ``safe_open``, so a merge holds about one tensor per checkpoint.
Sharded folders are followed through ``model.safetensors.index.json``. Pickled ``*.bin`` weights are
refused: unpickling runs code, and every current Hugging Face checkpoint has safetensors.
An ``nn.Module`` is already in memory, so its state dict is served as is.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from graphpress.errors import UnsafeFileError
from graphpress.merging.errors import CorruptCheckpointError, MergeError, MissingTensorError
from graphpress.merging.safetensors_io import TensorInfo, read_safetensors_header

__all__ = ["Checkpoint", "FolderCheckpoint", "ModuleCheckpoint", "open_checkpoint", "INDEX_FILE", "SINGLE_FILE"]

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class Checkpoint(ABC):
    """Tensors by name, their metadata known before any is read."""

    label: str
    folder: Path | None = None
    config: dict[str, Any] | None = None
    infos: dict[str, TensorInfo]

    @abstractmethod
    def read(self, name: str) -> torch.Tensor:
        """Return one tensor (a fresh CPU tensor the caller may modify)."""

    def close(self) -> None:  # noqa: B027 - optional hook: an in-memory module has nothing to release
        """Release open files."""


class FolderCheckpoint(Checkpoint):
    """A Hugging Face model folder with ``model.safetensors`` or sharded safetensors and an index."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.label = str(self.folder)
        if not self.folder.is_dir():
            raise MergeError(f"{self.folder} is not a folder")
        self.config = _read_json(self.folder / "config.json") if (self.folder / "config.json").is_file() else None
        self.infos = self._read_infos()
        self._handles: dict[Path, Any] = {}

    def _read_infos(self) -> dict[str, TensorInfo]:
        index_path = self.folder / INDEX_FILE
        if index_path.is_file():
            weight_map = _read_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CorruptCheckpointError(f"{index_path}: no 'weight_map' object")
            shard_headers: dict[str, dict[str, TensorInfo]] = {}
            infos: dict[str, TensorInfo] = {}
            for name, shard_name in weight_map.items():
                if shard_name not in shard_headers:
                    shard_path = self.folder / shard_name
                    if Path(shard_name).is_absolute() or ".." in Path(shard_name).parts:
                        raise UnsafeFileError(f"{index_path}: shard '{shard_name}' points outside {self.folder}")
                    if not shard_path.is_file():
                        raise MissingTensorError(
                            f"{index_path}: shard file '{shard_name}' (holding '{name}') is missing"
                        )
                    shard_headers[shard_name] = read_safetensors_header(shard_path)
                if name not in shard_headers[shard_name]:
                    raise MissingTensorError(
                        f"{self.folder / shard_name}: tensor '{name}' listed in the index is absent"
                    )
                infos[name] = shard_headers[shard_name][name]
            return infos
        if (self.folder / SINGLE_FILE).is_file():
            return read_safetensors_header(self.folder / SINGLE_FILE)
        if any(self.folder.glob("*.bin")) or any(self.folder.glob("*.pt")):
            raise UnsafeFileError(
                f"{self.folder} holds only pickled weights, which graphpress does not unpickle; "
                "convert them to safetensors first"
            )
        raise MissingTensorError(f"{self.folder} has neither {SINGLE_FILE} nor {INDEX_FILE}")

    def read(self, name: str) -> torch.Tensor:
        file = self.infos[name].file
        assert file is not None
        handle = self._handles.get(file)
        if handle is None:
            handle = self._handles[file] = safe_open(str(file), framework="pt")
        return handle.get_tensor(name)

    def close(self) -> None:
        self._handles.clear()  # safe_open handles close when collected


class ModuleCheckpoint(Checkpoint):
    """An in-memory ``nn.Module``; its config is taken from ``module.config`` when it has one."""

    def __init__(self, module: nn.Module, label: str) -> None:
        self.label = label
        self.module = module
        self._state = module.state_dict()
        config = getattr(module, "config", None)
        self.config = config.to_dict() if hasattr(config, "to_dict") else None
        self.infos = {name: TensorInfo(name, tensor.dtype, tuple(tensor.shape)) for name, tensor in self._state.items()}

    def read(self, name: str) -> torch.Tensor:
        return self._state[name].detach().clone()


def open_checkpoint(source: str | Path | nn.Module, label: str) -> Checkpoint:
    """Wrap a folder path or a module; ``label`` names a module in error messages (a folder names itself)."""
    if isinstance(source, nn.Module):
        return ModuleCheckpoint(source, label)
    if isinstance(source, (str, Path)):
        return FolderCheckpoint(source)
    raise MergeError(f"{label}: expected a model folder or an nn.Module, got {type(source).__name__}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"{path}: cannot be read as JSON ({error})") from error
    if not isinstance(content, dict):
        raise CorruptCheckpointError(f"{path}: expected a JSON object")
    return content
