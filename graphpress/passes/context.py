"""The context a pipeline runs in (TVM's PassContext idea): inputs for checks, calibration, switches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["PassContext"]


@dataclass
class PassContext:
    """Everything a pass may need besides the graph.

    ``example_inputs``/``example_kwargs`` drive the numeric check after each pass; ``calibration`` is the
    user's calibration data as given (analyses turn it into statistics); ``check`` turns the numeric check
    off; ``rollback`` keeps a snapshot before each pass, in host memory or on the model's device as
    ``snapshots`` says ("auto": host memory when a device copy would take over half the free device memory,
    see ``snapshot.py``; ``restore_on_failure=False`` keeps them for the checks only, for a caller that
    restores the model itself); ``disabled`` names passes to skip; ``repro_dir``
    receives a crash reproducer; ``progress`` is a factory of progress bars (see graphpress.progress).
    """

    example_inputs: tuple | None = None
    example_kwargs: dict[str, Any] | None = None
    calibration: Any = None
    tokenizer: Any = None
    check: bool = True
    rollback: bool = True
    snapshots: str = "auto"
    restore_on_failure: bool = True  # False: the caller restores from its own copy (optimize in place)
    disabled: frozenset[str] = frozenset()
    repro_dir: str | None = None
    progress: Callable[..., Any] | None = None
    exact_rtol: float | None = None
    log: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
