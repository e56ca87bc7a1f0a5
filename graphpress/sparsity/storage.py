"""A sparse checkpoint format: one bitmask plus the packed nonzeros per sparse tensor, in a safetensors file.

A 50%-sparse fp32 matrix stored densely spends half its bytes on zeros. Here each tensor with at least
``min_sparsity`` zeros is written as ``<name>::mask`` (uint8, one bit per entry, little-endian bit order,
row-major) and ``<name>::values`` (its nonzeros, same dtype, in row-major order): ``1 + (1 - s) * bits``
bits per weight instead of ``bits``, so 17 bits instead of 32 at 50% fp32 and 9 instead of 16 at 50%
fp16. Denser tensors are written as they are. Tied tensors (an lm_head sharing the embedding) are stored
once. The safetensors container means no pickle is ever loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import GraphpressError
from ..io import atomic_path

__all__ = ["SparseCheckpointInfo", "save_sparse", "load_sparse", "pack_sparse", "unpack_sparse"]

_METADATA_KEY = "graphpress.sparse"
_FORMAT_VERSION = 1


@dataclass
class SparseCheckpointInfo:
    """Sizes of a written checkpoint: bytes on disk vs the dense tensors, and how many tensors went sparse."""

    path: str
    bytes_on_disk: int
    dense_bytes: int
    sparse_tensors: int
    dense_tensors: int

    @property
    def size_ratio(self) -> float:
        return self.bytes_on_disk / max(self.dense_bytes, 1)


def pack_sparse(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bitmask uint8, nonzero values)`` of ``tensor`` (any shape; flattened row-major)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    nonzero = flat != 0
    bits = np.packbits(nonzero.numpy(), bitorder="little")
    return torch.from_numpy(bits), flat[nonzero].clone()


def unpack_sparse(mask: torch.Tensor, values: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_sparse`."""
    count = int(np.prod(shape)) if shape else 1
    nonzero = torch.from_numpy(np.unpackbits(mask.numpy(), count=count, bitorder="little").astype(bool))
    if int(nonzero.sum()) != values.numel():
        raise GraphpressError(f"corrupt sparse tensor: mask has {int(nonzero.sum())} nonzeros, "
                              f"values has {values.numel()}")
    dense = torch.zeros(count, dtype=values.dtype)
    dense[nonzero] = values
    return dense.reshape(shape)


def _state_dict(model_or_state: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(model_or_state, torch.nn.Module):
        return model_or_state.state_dict(keep_vars=False)
    return model_or_state


def save_sparse(model_or_state: Any, path: str | os.PathLike, *, min_sparsity: float = 0.25) -> SparseCheckpointInfo:
    """Write a model (or state dict) to ``path`` in the sparse format; return sizes, bytes on disk included."""
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    dense_bytes = 0
    for name, tensor in _state_dict(model_or_state).items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen and tensor.numel():
            aliases[name] = seen[key]
            continue
        seen[key] = name
        dense_bytes += tensor.numel() * tensor.element_size()
        zeros = int((tensor == 0).sum()) if tensor.is_floating_point() else 0
        if tensor.is_floating_point() and tensor.numel() and zeros / tensor.numel() >= min_sparsity:
            mask, values = pack_sparse(tensor)
            tensors[f"{name}::mask"], tensors[f"{name}::values"] = mask, values
            layout[name] = {"encoding": "bitmask", "shape": list(tensor.shape)}
        else:
            tensors[name] = tensor.detach().cpu().contiguous().clone()
            layout[name] = {"encoding": "dense"}
    metadata = {_METADATA_KEY: json.dumps({"version": _FORMAT_VERSION, "tensors": layout, "aliases": aliases})}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
    sparse = sum(1 for entry in layout.values() if entry["encoding"] == "bitmask")
    return SparseCheckpointInfo(str(path), os.path.getsize(path), dense_bytes, sparse, len(layout) - sparse)


def load_sparse(path: str | os.PathLike, model: torch.nn.Module | None = None, *, strict: bool = True) -> Any:
    """Read a checkpoint written by :func:`save_sparse`: the dense state dict, or ``model`` with it loaded."""
    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get(_METADATA_KEY)
        if raw is None:
            raise GraphpressError(f"{path} is not a graphpress sparse checkpoint (no '{_METADATA_KEY}' metadata); "
                                  "write it with graphpress.sparsity.save_sparse")
        header = json.loads(raw)
        if header.get("version") != _FORMAT_VERSION:
            raise GraphpressError(f"{path}: sparse checkpoint version {header.get('version')} is not supported "
                                  f"(this graphpress reads version {_FORMAT_VERSION})")
        state: dict[str, torch.Tensor] = {}
        for name, entry in header["tensors"].items():
            if entry["encoding"] == "bitmask":
                state[name] = unpack_sparse(handle.get_tensor(f"{name}::mask"), handle.get_tensor(f"{name}::values"),
                                            tuple(entry["shape"]))
            else:
                state[name] = handle.get_tensor(name)
    for alias, target in header["aliases"].items():
        state[alias] = state[target]
    if model is None:
        return state
    model.load_state_dict(state, strict=strict)
    return model
