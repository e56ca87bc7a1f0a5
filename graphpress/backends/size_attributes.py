"""Plain integer attributes that store a width pruning changed, and the rules that keep them in step.

Why: forward code often reshapes with a number its module stored when it was built. SpeechT5's attention
reshapes its output to ``self.embed_dim``; Conditional-DETR's cross-attention splits heads by
``self.num_attention_heads``; Mllama reshapes the projected image features to ``self.hidden_size``. The traced
graph holds those numbers as constants of its own, which pruning edits, but the user's module, handed back,
keeps the old ones and fails. :mod:`.hf_fixups` writes the names it knows; this file covers the names it does
not, from evidence rather than a list. A number may also sit in a short tuple of integers (timm's relative
position bias views its table as ``self.bias_shape``, whose last entry is the head count): such an element is
named ``bias_shape[2]`` and rewritten into a new tuple.

A :class:`SizeRule` says "attribute ``attr`` of the module at ``module`` is the size of tensor ``tensor`` (a
parameter or buffer path relative to that module) along ``axis``, divided by ``unit``". It holds on the
unpruned model by construction, and after pruning it gives the attribute's new value: ``unit`` 1 for a width,
``head_dim`` for a head count. Rules are found by trial (:mod:`graphpress.passes.prune.size_repair`), kept in
``graph.metadata`` and applied by :func:`~.torch_module.finalize_module` before the named fix-ups, so every
model the passes hand back carries them and ``fix_config`` records the repaired values for ``load_pruned``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from ..ir import Graph

__all__ = ["SizeRule", "RULES_KEY", "size_attributes", "read_size", "propose_rules", "twin_rules", "apply_rules",
           "undo", "graph_rules", "record_rules", "submodule_at"]

#: Key of the rule list in ``Graph.metadata`` (plain dicts, so snapshots and deep copies carry them).
RULES_KEY = "size_rules"


@dataclass(frozen=True)
class SizeRule:
    """``<module>.<attr> = <module>.<tensor>.shape[axis] // unit``."""

    module: str
    attr: str
    tensor: str
    axis: int
    unit: int = 1

    def value(self, root: nn.Module) -> int | None:
        """The attribute's value the rule gives in ``root`` now, or None when the tensor is gone."""
        owner = submodule_at(root, self.module)
        tensor = _tensor(owner, self.tensor) if owner is not None else None
        if tensor is None or tensor.dim() <= self.axis or tensor.shape[self.axis] % self.unit:
            return None
        return int(tensor.shape[self.axis]) // self.unit

    def describe(self) -> str:
        unit = f" // {self.unit}" if self.unit != 1 else ""
        where = f"{self.module}." if self.module else ""
        return f"{where}{self.attr} = {self.tensor}.shape[{self.axis}]{unit}"


def submodule_at(root: nn.Module, path: str) -> nn.Module | None:
    """The module at ``path`` under ``root`` (``root`` itself for ''), or None where there is none."""
    try:
        return root.get_submodule(path) if path else root
    except AttributeError:
        return None


def _tensor(module: nn.Module, path: str) -> torch.Tensor | None:
    owner_path, _, name = path.rpartition(".")
    owner = submodule_at(module, owner_path)
    if owner is None:
        return None
    found = owner._parameters.get(name)
    found = owner._buffers.get(name) if found is None else found
    return found if isinstance(found, torch.Tensor) else None


#: Shapes stored as tuples or lists longer than this are not taken for sizes.
_SHAPE_LIMIT = 8
_SEQUENCES = (tuple, list, torch.Size)
_ELEMENT = re.compile(r"^(\w+)\[(\d+)\]$")


def size_attributes(module: nn.Module) -> dict[str, int]:
    """The module's own plain integer attributes above 1 (booleans, private names and ``training`` left out),
    and the elements above 1 of its short tuples and lists of integers as ``name[i]`` (timm's relative position
    bias views its table as ``self.bias_shape``, a tuple ending in the head count): the numbers a forward could
    reshape with."""
    found: dict[str, int] = {}
    # torch's own layers keep hyperparameters in tuples (a convolution's kernel_size, stride, padding), which no
    # pruning makes stale; offering them would only spend the repair's runs.
    shapes = not type(module).__module__.startswith("torch.nn.")
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if type(value) is int and value > 1:
            found[name] = value
        elif shapes and type(value) in _SEQUENCES and len(value) <= _SHAPE_LIMIT:
            found.update({f"{name}[{i}]": item for i, item in enumerate(value) if type(item) is int and item > 1})
    return found


def read_size(owner: nn.Module, attr: str) -> int | None:
    """The integer ``attr`` (a name, or ``name[i]`` for an element of a tuple or list) holds, or None."""
    element = _ELEMENT.match(attr)
    if element is None:
        value = getattr(owner, attr, None)
        return value if type(value) is int else None
    sequence, index = getattr(owner, element[1], None), int(element[2])
    if type(sequence) in _SEQUENCES and index < len(sequence) and type(sequence[index]) is int:
        return sequence[index]
    return None


def _write_size(owner: nn.Module, attr: str, value: int) -> None:
    """Set ``attr`` to ``value``; an element is written into a new tuple or list (the old one may be shared)."""
    element = _ELEMENT.match(attr)
    if element is None:
        setattr(owner, attr, value)
        return
    sequence = getattr(owner, element[1])
    items = list(sequence)
    items[int(element[2])] = value
    setattr(owner, element[1], items if type(sequence) is list else type(sequence)(items))


def _tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters(remove_duplicate=False)
    yield from module.named_buffers(remove_duplicate=False)


def propose_rules(original: nn.Module, edited: nn.Module, path: str,
                  quoted: frozenset[int] | set[int] = frozenset()) -> list[tuple[SizeRule, int]]:
    """Candidate rules for the size attributes of the module at ``path``, with the value each gives in ``edited``.

    Evidence is the tensors under that module whose sizes pruning changed (``original`` is the unpruned model,
    ``edited`` the pruned copy): an attribute equal to an old size ``S`` now ``S'`` may be a width (``S'``), and
    one that divides it a count of units of ``S / value`` (``S' / (S / value)`` heads of unchanged size).
    Candidates are ranked by how many tensors vote for the same new value (coupled projections agree), then
    those whose current value is ``quoted`` (numbers of the error message: ``shape '[1, 49, 1024]'``) first."""
    before, after = submodule_at(original, path), submodule_at(edited, path)
    if before is None or after is None:
        return []
    old = dict(_tensors(before))
    changes = [(name, axis, int(was.shape[axis]), int(now.shape[axis]))
               for name, now in _tensors(after) if (was := old.get(name)) is not None and was.dim() == now.dim()
               for axis in range(now.dim()) if was.shape[axis] != now.shape[axis]]
    votes: Counter[tuple[str, int]] = Counter()
    first: dict[tuple[str, int], SizeRule] = {}
    for attr, value in size_attributes(before).items():
        if read_size(after, attr) != value:
            continue  # another fix-up already rewrote it
        for name, axis, size, new_size in changes:
            unit = size // value if size % value == 0 else 0
            if not unit or new_size % unit:
                continue
            key = (attr, new_size // unit)
            votes[key] += 1
            first.setdefault(key, SizeRule(path, attr, name, axis, unit))
    ranked = sorted(first, key=lambda key: (-votes[key], read_size(after, key[0]) not in quoted, first[key].unit))
    return [(first[key], key[1]) for key in ranked if key[1] != read_size(after, key[0])]


def twin_rules(rule: SizeRule, original: nn.Module) -> list[SizeRule]:
    """The rule moved to every other module of the same class that has the same tensor and whose attribute it
    explains in ``original``: repeated blocks run the same code and need the same repair."""
    owner = submodule_at(original, rule.module)
    twins: list[SizeRule] = []
    for path, module in original.named_modules():
        if path == rule.module or type(module) is not type(owner):
            continue
        moved = SizeRule(path, rule.attr, rule.tensor, rule.axis, rule.unit)
        if read_size(module, rule.attr) == moved.value(original) is not None:
            twins.append(moved)
    return twins


def apply_rules(root: nn.Module, rules: list[SizeRule]) -> dict[tuple[str, str], int]:
    """Set every attribute its rule names; returns the old values, for undoing a trial."""
    old: dict[tuple[str, str], int] = {}
    for rule in rules:
        owner, value = submodule_at(root, rule.module), rule.value(root)
        current = read_size(owner, rule.attr) if owner is not None else None
        if value is not None and current is not None:
            old.setdefault((rule.module, rule.attr), current)
            _write_size(owner, rule.attr, value)
    return old


def undo(root: nn.Module, old: dict[tuple[str, str], int]) -> None:
    """Put back the values :func:`apply_rules` returned."""
    for (path, attr), value in old.items():
        owner = submodule_at(root, path)
        if owner is not None:
            _write_size(owner, attr, value)


def graph_rules(graph: Graph) -> list[SizeRule]:
    """The rules recorded for ``graph``'s module."""
    return [SizeRule(**entry) for entry in graph.metadata.get(RULES_KEY, [])]


def record_rules(graph: Graph, rules: list[SizeRule]) -> None:
    """Add ``rules`` to ``graph.metadata`` (once each)."""
    entries = graph.metadata.setdefault(RULES_KEY, [])
    for rule in rules:
        if asdict(rule) not in entries:
            entries.append(asdict(rule))
