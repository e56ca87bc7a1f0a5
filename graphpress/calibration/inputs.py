"""Turn the calibration data a user hands over into a list of model-input batches.

Three forms are accepted so that every method takes calibration the same way:

* a LongTensor of token windows ``[n, seqlen]`` (EVAL.md's protocol): split into batches of ``batch_size``;
* a list of strings plus a tokenizer: each string becomes its own batch (no padding, so padding tokens
  never pollute the statistics), truncated to ``max_length`` tokens;
* an iterable of dicts of model inputs (``input_ids``, ``attention_mask``, ...): used as given, one dict a batch.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Union

import torch

from graphpress.errors import OptionError

__all__ = ["CalibrationData", "calibration_batches"]

CalibrationData = Union[torch.Tensor, Iterable[str], Iterable[Mapping[str, Any]]]


def calibration_batches(
    data: CalibrationData,
    *,
    tokenizer: Optional[Any] = None,
    batch_size: int = 4,
    max_length: int = 512,
) -> list[dict[str, Any]]:
    """Model-input batches (dicts) from any accepted form of calibration data."""
    if batch_size < 1:
        raise OptionError(f"calibration batch_size must be >= 1, got {batch_size}")
    if isinstance(data, torch.Tensor):
        if data.dim() == 1:
            data = data.unsqueeze(0)
        if data.dim() != 2 or data.dtype not in (torch.long, torch.int32, torch.int64):
            raise OptionError(f"calibration tokens must be an integer tensor [n, seqlen], got {tuple(data.shape)} {data.dtype}")
        return [{"input_ids": data[i : i + batch_size].long()} for i in range(0, data.shape[0], batch_size)]
    items = list(data)
    if not items:
        raise OptionError("calibration data is empty")
    if all(isinstance(item, str) for item in items):
        if tokenizer is None:
            raise OptionError("calibration given as text needs a tokenizer")
        return [dict(tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)) for text in items]
    if all(isinstance(item, Mapping) for item in items):
        return [dict(item) for item in items]
    raise OptionError("calibration must be a token tensor, a list of strings, or an iterable of input dicts")
