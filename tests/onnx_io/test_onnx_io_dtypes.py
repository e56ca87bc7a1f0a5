"""Tensors cross the ONNX boundary bit-exactly, including the dtypes numpy has no native type for."""

import pytest
import torch

from graphpress.errors import FrontendError
from graphpress.frontends.onnx_dtypes import (
    onnx_to_torch_dtype,
    tensor_from_proto,
    tensor_to_proto,
    torch_to_onnx_dtype,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int64, torch.bool]
DTYPES += [d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if d is not None]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tensor_round_trip_is_bit_exact(dtype):
    source = (torch.randn(3, 5) * 4).to(dtype)
    proto = tensor_to_proto(source, "w")
    assert proto.name == "w" and list(proto.dims) == [3, 5]
    assert onnx_to_torch_dtype(proto.data_type) == dtype == onnx_to_torch_dtype(torch_to_onnx_dtype(dtype))
    back = tensor_from_proto(proto)
    assert back.dtype == dtype
    assert torch.equal(back.view(torch.uint8), source.view(torch.uint8))


def test_meta_tensor_has_nothing_to_write():
    with pytest.raises(FrontendError, match="meta device"):
        tensor_to_proto(torch.empty(2, 2, device="meta"), "w")
