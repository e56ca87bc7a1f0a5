"""The exceptions graphpress raises.

Every error a user can provoke derives from :class:`GraphpressError`, so a caller can catch one type,
and each message says what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "GraphpressError",
    "FrontendError",
    "UnsupportedOpError",
    "DataDependentError",
    "VerificationError",
    "PipelineError",
    "PassError",
    "InfeasibleRequestError",
    "OptionError",
    "BackendError",
    "UnsafeFileError",
]


class GraphpressError(Exception):
    """Base class of every error graphpress raises on purpose."""


class FrontendError(GraphpressError):
    """A model could not be traced or loaded into the IR."""


class StateMutationError(FrontendError):
    """A model whose forward writes to its own buffers or parameters (or to its inputs), so it is not a
    function of its inputs that a graph can stand for; ``targets`` names what it writes to."""

    def __init__(self, message: str, targets: list[str]) -> None:
        super().__init__(message)
        self.targets = targets


class UnsupportedOpError(FrontendError):
    """An operator that no graphpress rule knows."""


class DataDependentError(UnsupportedOpError):
    """A model whose shapes or branches depend on tensor values (``.item()``, ``nonzero``, ``if x.any():``), which
    a trace with shapes alone cannot follow."""


class VerificationError(GraphpressError):
    """The IR broke one of its invariants (dangling value, cycle, shape mismatch)."""


class PipelineError(GraphpressError):
    """A pipeline string or pass list is malformed, names an unknown pass, or orders passes badly."""


class OptionError(PipelineError):
    """A pass option is unknown, of the wrong type, or out of range."""


class PassError(GraphpressError):
    """A pass failed; the model was rolled back to its state before the pass."""


class InfeasibleRequestError(PassError):
    """A pass was asked for more than the model allows (e.g. a ratio that would empty a coupled group).

    Raised before anything is changed, so the model is as it was; the message says how far it can go."""


class BackendError(GraphpressError):
    """The IR's decisions could not be applied to the real model or written out."""


class UnsafeFileError(GraphpressError):
    """A file asks for something graphpress refuses to do (a path outside its folder, an unsafe pickle)."""
