"""Reading safetensors headers strictly and writing safetensors files one tensor at a time.

Why not ``safetensors.torch.save_file``: it needs the whole state dict in memory, and a merge of three
7B checkpoints must hold about one tensor per model, not three models. The safetensors layout makes
streaming easy: an 8-byte little-endian header length, a JSON header giving each tensor's dtype, shape
and byte range, then the raw bytes back to back. Every shape and dtype of the output is known before
the first tensor is merged (it is the base's), so the header is written first and each merged tensor's
bytes are appended as soon as it exists.

The header reader validates what ``safe_open`` would only find later or never: a truncated file, a
header whose byte ranges overlap, leave holes or disagree with dtype x shape. Every error names the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from graphpress.merging.errors import CorruptCheckpointError

__all__ = ["TensorInfo", "read_safetensors_header", "SafetensorsStreamWriter", "plan_shards"]

# Safetensors dtype codes, with the torch dtype each one maps to.
_CODE_TO_DTYPE: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
for _code, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):  # the wide unsigned dtypes exist only in recent torch releases
        _CODE_TO_DTYPE[_code] = getattr(torch, _attr)
_DTYPE_TO_CODE = {dtype: code for code, dtype in _CODE_TO_DTYPE.items()}

# A header larger than this is not a real checkpoint (the Rust reader refuses beyond 100 MB as well).
_MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it looks like, known without reading its bytes."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path | None = None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and check the header of a safetensors file; raise :class:`CorruptCheckpointError` naming it."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CorruptCheckpointError(f"{path}: {file_size} bytes, too short to be a safetensors file")
            (header_size,) = struct.unpack("<Q", prefix)
            if header_size > _MAX_HEADER_BYTES or 8 + header_size > file_size:
                raise CorruptCheckpointError(
                    f"{path}: header claims {header_size} bytes but the file has {file_size}: "
                    "truncated or not safetensors"
                )
            raw_header = handle.read(header_size)
    except OSError as error:
        raise CorruptCheckpointError(f"{path}: cannot be read ({error})") from error
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptCheckpointError(f"{path}: the safetensors header is not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise CorruptCheckpointError(f"{path}: the safetensors header is not a JSON object")
    header.pop("__metadata__", None)

    infos: dict[str, TensorInfo] = {}
    ranges: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        try:
            dtype = _CODE_TO_DTYPE[entry["dtype"]]
            shape = tuple(int(size) for size in entry["shape"])
            begin, end = (int(offset) for offset in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptCheckpointError(f"{path}: tensor '{name}' has a malformed header entry ({error})") from error
        expected = math.prod(shape) * dtype.itemsize
        if end - begin != expected:
            raise CorruptCheckpointError(
                f"{path}: tensor '{name}' spans {end - begin} bytes but {entry['dtype']}{list(shape)} needs {expected}"
            )
        infos[name] = TensorInfo(name, dtype, shape, path)
        ranges.append((begin, end, name))

    # The byte ranges must tile the data section exactly: a hole or an overlap means a damaged file,
    # and a data section shorter than the header promises means a truncated download.
    position = 0
    for begin, end, name in sorted(ranges):
        if begin != position:
            raise CorruptCheckpointError(f"{path}: tensor '{name}' starts at byte {begin}, expected {position}")
        position = end
    data_size = file_size - 8 - header_size
    if position != data_size:
        raise CorruptCheckpointError(
            f"{path}: the header describes {position} bytes of tensor data but the file holds {data_size}: "
            "the file is truncated or damaged"
        )
    return infos


def plan_shards(infos: list[TensorInfo], max_shard_bytes: int) -> list[list[TensorInfo]]:
    """Split tensors, in order, into consecutive shards of at most ``max_shard_bytes`` (one tensor may exceed it)."""
    shards: list[list[TensorInfo]] = [[]]
    shard_bytes = 0
    for info in infos:
        if shards[-1] and shard_bytes + info.nbytes > max_shard_bytes:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(info)
        shard_bytes += info.nbytes
    return shards


class SafetensorsStreamWriter:
    """Write one safetensors file whose tensors are known in advance and arrive one by one, in order."""

    def __init__(self, path: Path, tensors: list[TensorInfo], metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self._pending = list(tensors)
        self._position = 0
        header: dict[str, object] = {"__metadata__": {"format": "pt", **(metadata or {})}}
        offset = 0
        for info in tensors:
            header[info.name] = {
                "dtype": _DTYPE_TO_CODE[info.dtype],
                "shape": list(info.shape),
                "data_offsets": [offset, offset + info.nbytes],
            }
            offset += info.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # the reference writer pads so tensor data starts 8-aligned
        self._handle: BinaryIO = open(self.path, "wb")
        self._handle.write(struct.pack("<Q", len(encoded)))
        self._handle.write(encoded)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Append the next tensor; it must be the next one declared, with the declared dtype and shape."""
        if self._position >= len(self._pending):
            raise ValueError(f"{self.path}: '{name}' was not declared when the file was opened")
        expected = self._pending[self._position]
        if name != expected.name or tensor.dtype != expected.dtype or tuple(tensor.shape) != expected.shape:
            raise ValueError(
                f"{self.path}: expected {expected.name} {expected.dtype}{list(expected.shape)}, "
                f"got {name} {tensor.dtype}{list(tensor.shape)}"
            )
        flat_bytes = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        self._handle.write(flat_bytes.numpy().data)
        self._position += 1

    def close(self) -> None:
        """Flush to disk; refuse if a declared tensor was never written (the file would be unreadable)."""
        missing = len(self._pending) - self._position
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        if missing:
            raise ValueError(f"{self.path}: closed with {missing} declared tensors never written")

    def abort(self) -> None:
        """Close without the completeness check (the caller discards the file)."""
        self._handle.close()
