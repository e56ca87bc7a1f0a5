"""The streaming safetensors writer produces files the reference reader accepts; the strict header reader."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from graphpress.merging import CorruptCheckpointError
from graphpress.merging.safetensors_io import (
    SafetensorsStreamWriter,
    TensorInfo,
    plan_shards,
    read_safetensors_header,
)

TENSORS = {
    "embed": torch.randn(5, 3).to(torch.bfloat16),
    "scale": torch.tensor(2.5),  # 0-dim
    "ids": torch.arange(7, dtype=torch.int64),
    "mask": torch.tensor([True, False, True]),
}


def infos() -> list[TensorInfo]:
    return [TensorInfo(name, tensor.dtype, tuple(tensor.shape)) for name, tensor in TENSORS.items()]


def test_streamed_file_round_trips_through_the_reference_reader(tmp_path):
    path = tmp_path / "model.safetensors"
    writer = SafetensorsStreamWriter(path, infos(), {"merge_method": "ties"})
    for name, tensor in TENSORS.items():
        writer.write(name, tensor)
    writer.close()
    loaded = load_file(str(path))
    for name, tensor in TENSORS.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    assert {name: info.shape for name, info in read_safetensors_header(path).items()} == {
        name: tuple(tensor.shape) for name, tensor in TENSORS.items()
    }


def test_writer_refuses_undeclared_order_and_incomplete_files(tmp_path):
    writer = SafetensorsStreamWriter(tmp_path / "a.safetensors", infos())
    with pytest.raises(ValueError, match="expected embed"):
        writer.write("scale", TENSORS["scale"])
    with pytest.raises(ValueError, match="4 declared tensors never written"):
        writer.close()


def test_header_reader_finds_holes_between_tensors(tmp_path):
    path = tmp_path / "holey.safetensors"
    save_file({"a": torch.zeros(4), "b": torch.ones(4)}, str(path))
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    header["b"]["data_offsets"] = [20, 36]  # a gap of 4 bytes after 'a', and 4 bytes past the end
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + header_size :])
    with pytest.raises(CorruptCheckpointError, match="tensor 'b' starts at byte 20, expected 16"):
        read_safetensors_header(path)


def test_shards_respect_the_size_limit_in_order():
    sizes = [TensorInfo(f"t{index}", torch.float32, (count,)) for index, count in enumerate([10, 10, 30, 5])]
    shards = plan_shards(sizes, max_shard_bytes=80)
    assert [[info.name for info in shard] for shard in shards] == [["t0", "t1"], ["t2"], ["t3"]]
