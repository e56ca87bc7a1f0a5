"""Snapshots for rollback, kept in host memory when the model's weights live on an accelerator.

The pass manager copies the graph (and the module it is bound to) before every pass so that a failing pass
can be undone.  On a GPU that copy costs a whole model of device memory: with ``optimize``'s working copy
beside the user's model, a 7 B bfloat16 model needed three copies (about 40 GB) and did not fit a 24 GB
card.  A host snapshot deep-copies the object graph with every accelerator tensor copied to CPU memory
instead, and :meth:`Snapshot.materialize` deep-copies it back with those tensors on their devices again.

Only plain tensors and ``nn.Parameter``s that own their storage are moved: views and tensor subclasses are
deep-copied where they are, because moving them one by one would break storage sharing (a view and its base)
that the model may rely on.  Tied parameters (one object in two places) stay tied: the deep copy's memo
maps the object, not the place.
"""

from __future__ import annotations

import copy
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

__all__ = ["Snapshot", "take_snapshot", "device_tensors", "snapshot_on_host", "SNAPSHOT_PLACES"]

#: Where rollback snapshots live: "auto" (host memory when the model is on an accelerator and a device copy
#: would take more than half of the free device memory), "host" or "device".
SNAPSHOT_PLACES = ("auto", "host", "device")


# Objects whose attributes hold no model state (and, for Python modules and functions, far too much else).
_LEAVES = (type, str, bytes, int, float, bool, complex, types.ModuleType, types.FunctionType, types.MethodType,
           types.BuiltinFunctionType, torch.dtype, torch.device, torch.Size)


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, torch.nn.Module):
        return [*obj._parameters.values(), *obj._buffers.values(), *obj._modules.values(),
                *(v for k, v in vars(obj).items() if k not in ("_parameters", "_buffers", "_modules"))]
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, _LEAVES):
        return []
    state = getattr(obj, "__dict__", None)
    return list(state.values()) if isinstance(state, dict) else []


def device_tensors(root: Any, movable: Callable[[torch.Tensor], bool]) -> list[torch.Tensor]:
    """Every tensor reachable from ``root`` (through modules, containers and object attributes) for which
    ``movable`` holds and that is the only reachable tensor on its storage; each one once."""
    seen: set[int] = set()
    found: list[torch.Tensor] = []
    storages: dict[int, int] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if type(obj) in (torch.Tensor, torch.nn.Parameter) and obj.layout == torch.strided:
                pointer = obj.untyped_storage().data_ptr()
                storages[pointer] = storages.get(pointer, 0) + 1
                if obj._base is None and movable(obj):
                    found.append(obj)
            continue
        stack.extend(_children(obj))
    # Tensors on one storage (a view and its base, or two views) are left to deepcopy, which keeps them shared.
    return [t for t in found if storages[t.untyped_storage().data_ptr()] == 1 or t.numel() == 0]


def _moved(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    data = tensor.detach().to(device, copy=True)
    if isinstance(tensor, torch.nn.Parameter):
        return torch.nn.Parameter(data, requires_grad=tensor.requires_grad)
    return data


@dataclass
class Snapshot:
    """A deep copy of an object; ``moved`` pairs each host copy with the device its original lived on."""

    copy: Any
    moved: list[tuple[torch.Tensor, torch.device]] = field(default_factory=list)

    @property
    def on_host(self) -> bool:
        return bool(self.moved)

    def materialize(self) -> Any:
        """The snapshot as a live object: a device snapshot is handed out itself (no second device copy; the
        pass manager restores from it once), a host snapshot as a fresh deep copy with every moved tensor back
        on its original device."""
        if not self.moved:
            return self.copy
        memo = {id(host): _moved(host, device) for host, device in self.moved}
        return copy.deepcopy(self.copy, memo)


def take_snapshot(obj: Any, on_host: bool, movable: Callable[[torch.Tensor], bool] | None = None) -> Snapshot:
    """Deep-copy ``obj``; with ``on_host``, accelerator tensors (or those ``movable`` picks) go to CPU memory."""
    if not on_host:
        return Snapshot(copy.deepcopy(obj))
    movable = movable or (lambda t: t.device.type not in ("cpu", "meta"))
    tensors = device_tensors(obj, movable)
    memo: dict[int, Any] = {}
    moved = []
    for tensor in tensors:
        host = _moved(tensor, "cpu")
        memo[id(tensor)] = host
        moved.append((host, tensor.device))
    memo[id(memo)] = list(tensors)  # deepcopy's keep-alive list: the originals outlive the copy's ids
    return Snapshot(copy.deepcopy(obj, memo), moved)


def snapshot_on_host(root: Any, place: str = "auto") -> bool:
    """Whether snapshots of ``root`` should live in host memory (see :data:`SNAPSHOT_PLACES`)."""
    if place not in SNAPSHOT_PLACES:
        raise ValueError(f"snapshot place must be one of {SNAPSHOT_PLACES}, not {place!r}")
    if place != "auto":
        return place == "host"
    tensors = device_tensors(root, lambda t: t.device.type == "cuda")
    if not tensors:
        return False
    needed = sum(t.numel() * t.element_size() for t in tensors)
    device = tensors[0].device
    free, _ = torch.cuda.mem_get_info(device)
    return needed > free / 2
