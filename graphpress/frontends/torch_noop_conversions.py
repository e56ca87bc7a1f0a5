"""``module.to(dtype)`` inside a forward, when the module already has that dtype and device, skipped while tracing.

Switch Transformers' router runs ``self.classifier = self.classifier.to(self.dtype)`` in every forward. Its weights
already have that dtype, so the call changes nothing, but ``Module._apply`` can't swap torch.export's fake
parameters ("Couldn't swap Linear.weight") and the trace fails. Within :func:`unchanged_conversions_skipped`, a
``Module.to`` that would change no tensor returns the module as it is; one that would change something still runs
(and fails as before, with torch's message).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["unchanged_conversions_skipped"]


def _changes_nothing(module: torch.nn.Module, *args: object, **kwargs: object) -> bool:
    device, dtype, _, memory_format = torch._C._nn._parse_to(*args, **kwargs)
    if memory_format is not None:
        return False
    for tensor in (*module.parameters(), *module.buffers()):
        converts = tensor.is_floating_point() or tensor.is_complex()  # Module.to casts only these
        if dtype is not None and converts and tensor.dtype != dtype:
            return False
        if device is not None and (tensor.device.type != device.type or
                                   device.index is not None and tensor.device.index != device.index):
            return False
    return True


@contextmanager
def unchanged_conversions_skipped() -> Iterator[None]:
    """Within the block, ``nn.Module.to`` returns the module untouched when it would convert nothing."""
    original = torch.nn.Module.to

    def to(self: torch.nn.Module, *args: object, **kwargs: object) -> torch.nn.Module:
        return self if _changes_nothing(self, *args, **kwargs) else original(self, *args, **kwargs)

    torch.nn.Module.to = to
    try:
        yield
    finally:
        torch.nn.Module.to = original
