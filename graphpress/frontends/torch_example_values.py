"""Trace a model whose shapes or branches come from tensor values, by taking those values from the example input.

``torch.export`` traces with fake tensors, which have shapes but no values. A model that reads a value into
Python (``.item()``, ``.tolist()``, ``if mask.any():``, a tensor used as a pad width) or calls an op whose output
size depends on the data (``nonzero``, ``repeat_interleave`` by a tensor, a boolean mask index) gets an
*unbacked* symbol there, and the first branch or shape that needs its value stops the export. Vision towers of
vision-language models (Qwen2-VL's ``cu_seqlens.tolist()``, Pixtral's image sizes), EnCodec's padding and
Longformer's global-attention test are all of this kind.

graphpress graphs already have the example input's shapes; :func:`example_values_as_constants` extends that to
values. Inside it, fake tensors carry their real values too (torch's real-tensor propagation, the engine of
``torch.export.draft_export``), and each value read and each data-dependent output size is taken from the real
tensor and written into the graph as a constant. Every such read is listed (:class:`ValueRead`), so the caller
can say where the graph holds only for inputs like the example.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch._functorch.config
from torch._subclasses import fake_impls, meta_utils
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils import _pytree as pytree

__all__ = ["ValueRead", "example_values_as_constants", "describe_reads"]

_TORCH_FILES = ("/torch/", "/graphpress/", "/contextlib.py", "/functools.py")


@dataclass(frozen=True)
class ValueRead:
    """One value the trace took from the example input: what kind (a value read into Python, or the output of an
    op sized by the data), where the model asked for it, and what it was."""

    what: str
    location: str
    value: str


def _tagged_data_dependent(func: torch._ops.OpOverload) -> bool:
    tags = getattr(func, "tags", ())
    return torch.Tag.data_dependent_output in tags or torch.Tag.dynamic_output_shape in tags


def _model_location() -> str:
    frames = [frame for frame in traceback.extract_stack()
              if not any(part in frame.filename for part in _TORCH_FILES)]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "an unknown location"


def _summary(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return ", ".join(_summary(v) for v in value)
    return repr(value)


def _real(value: Any) -> Any:
    """The real tensor behind a fake one (callers have checked that every fake tensor has one)."""
    return value.real_tensor if isinstance(value, FakeTensor) else value


def _sized_by_data(func: torch._ops.OpOverload, args: tuple) -> bool:
    """Whether the output size depends on values: always for ``nonzero`` and its kind; for indexing only with a
    boolean mask (torch tags every ``x[i]`` as data-sized, though integer indices keep their own shape)."""
    if func.overloadpacket in (torch.ops.aten.index, torch.ops.aten.index_put, torch.ops.aten.index_put_):
        indices = args[1] if len(args) > 1 else []
        return any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices)
    return True


def _plain(tensor: Any) -> Any:
    return tensor.detach() if isinstance(tensor, torch.nn.Parameter) else tensor


def _static_like(template: FakeTensor, real: Any) -> Any:
    """``real``'s result as fake tensors of its exact (static) sizes and strides, on ``template``'s device."""
    def fake(leaf: Any) -> Any:
        if not isinstance(leaf, torch.Tensor):
            return leaf
        return template.new_empty_strided(leaf.shape, leaf.stride(), dtype=leaf.dtype)
    return pytree.tree_map(fake, real)


@contextmanager
def example_values_as_constants() -> Iterator[list[ValueRead]]:
    """Within this block, ``torch.export`` takes data-dependent values and sizes from the example input.

    Yields the list that collects the :class:`ValueRead` of each one. The model runs twice over (fake and real
    tensors side by side), so this is for the trace that failed without it, not every trace.
    """
    reads: list[ValueRead] = []

    def from_example(fake_mode: Any, func: torch._ops.OpOverload, *args: Any, **kwargs: Any) -> Any:
        fakes = [a for a in pytree.tree_leaves((args, kwargs)) if isinstance(a, FakeTensor)]
        if not fakes or any(f.real_tensor is None for f in fakes):
            return NotImplemented  # torch's own fake kernel: an unbacked symbol
        reads_value = torch.Tag.data_dependent_output in func.tags
        if not reads_value and not _sized_by_data(func, args):
            return NotImplemented
        real_args, real_kwargs = pytree.tree_map(_real, (args, kwargs))
        out = func(*real_args, **real_kwargs)
        what = "value read into Python" if reads_value else f"data-sized {func.overloadpacket.__name__}"
        reads.append(ValueRead(what, _model_location(), _summary(out)))
        return _static_like(fakes[0], out) if pytree.tree_any(lambda v: isinstance(v, torch.Tensor), out) else out

    def format_value(tensor: torch.Tensor, spec: str) -> str:
        real = tensor.real_tensor if isinstance(tensor, FakeTensor) and tensor.dim() == 0 else None
        if real is None:
            return tensor_format(tensor, spec)
        reads.append(ValueRead("value read into Python", _model_location(), repr(real.item())))
        return format(real.item(), spec)

    tensor_format = torch.Tensor.__format__
    torch.Tensor.__format__ = format_value  # f"expert_{index}" (Switch Transformers): eager formats the number
    entry = (_tagged_data_dependent, from_example)
    fake_impls.op_implementations_checks.insert(0, entry)
    copy, clone = meta_utils._safe_copy, meta_utils._safe_clone
    # torch copies only exact torch.Tensor data into a fake tensor's real twin, so every nn.Parameter's real
    # twin is left uninitialised and routers compute from garbage weights (torch 2.11-2.13).
    meta_utils._safe_copy = lambda dst, src: copy(dst, _plain(src))
    meta_utils._safe_clone = lambda src: clone(_plain(src))
    shapes_log = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    level = shapes_log.level
    shapes_log.setLevel(logging.ERROR)  # it warns of each guard it settles from a real value; the reads say more
    try:
        with torch._functorch.config.patch(fake_tensor_propagate_real_tensors=True):
            yield reads
    finally:
        fake_impls.op_implementations_checks.remove(entry)
        meta_utils._safe_copy, meta_utils._safe_clone = copy, clone
        torch.Tensor.__format__ = tensor_format
        shapes_log.setLevel(level)


def describe_reads(reads: list[ValueRead], limit: int = 5) -> str:
    """One line per model location (the first ``limit``), with how many values were read there."""
    by_place: dict[str, list[ValueRead]] = {}
    for read in reads:
        by_place.setdefault(read.location, []).append(read)
    lines = [f"{place}: {len(found)} x {found[0].what} (first: {found[0].value})"
             for place, found in list(by_place.items())[:limit]]
    if len(by_place) > limit:
        lines.append(f"... and {len(by_place) - limit} more places")
    return "\n".join(lines)
