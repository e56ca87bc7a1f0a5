"""The pass contract: ``requires -> call -> ensures``, returning a :class:`PassResult`.

A pass is a small class. It declares its name, options, whether it is exact (outputs must not change),
which cached analyses it preserves, and which graph origins it supports; it implements ``call``. The pass
manager does everything else: option checking, verification, numeric checks, timing, rollback.

Passes edit the graph in place (the manager has already copied the user's model); ``call`` returns whether
anything changed plus statistics a report can show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from ..errors import PassError
from .options import Option, validate_options

if TYPE_CHECKING:
    from ..ir import Graph
    from .context import PassContext

__all__ = ["Pass", "PassResult"]


@dataclass
class PassResult:
    """What a pass did: ``modified`` drives fixed-point iteration and analysis invalidation."""

    graph: "Graph"
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)


class Pass:
    """Base class of every graphpress pass.

    Class attributes authors set:
      ``name``      the registry name used in pipeline strings ("fold-bn").
      ``summary``   one line of help.
      ``options``   the :class:`Option` list.
      ``exact``     True if outputs must be unchanged (checked on the example inputs).
      ``preserves`` names of analyses that stay valid after the pass ("*" for all).
      ``origins``   graph origins the pass supports ("torch", "onnx").
      ``needs_calibration``  True if ``ctx.calibration`` must be given.
      ``retraces``  True for passes that restructure the torch module itself (drop or merge layers); the
                    manager re-traces the module into a fresh graph after them.
      ``needs_reference``  True if the pass reads the user's original model
                    (``ctx.extras["reference_module"]``, e.g. a distillation teacher): ``optimize`` then
                    compresses a copy even with ``inplace=True``.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    options: ClassVar[Sequence[Option]] = ()
    exact: ClassVar[bool] = False
    preserves: ClassVar[frozenset[str]] = frozenset()
    origins: ClassVar[frozenset[str]] = frozenset({"torch", "onnx"})
    needs_calibration: ClassVar[bool] = False
    retraces: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False

    def __init__(self, **options: Any):
        self.given_options = dict(options)
        self.opts: dict[str, Any] = validate_options(self.name, self.options, options)

    # -- the contract ------------------------------------------------------------------------------
    def requires(self, graph: "Graph", ctx: "PassContext") -> None:
        """Raise PassError if the graph or context does not meet this pass's preconditions."""
        if graph.origin not in self.origins:
            raise PassError(f"pass '{self.name}' does not support {graph.origin} models "
                            f"(it supports: {', '.join(sorted(self.origins))})")
        if self.needs_calibration and ctx.calibration is None:
            raise PassError(f"pass '{self.name}' needs calibration data: pass calibration=... "
                            "(token windows, strings with a tokenizer, or model inputs), or --calibration FILE")

    def uses_calibration(self) -> bool:
        """True if this pass, with the options it was given, reads ``ctx.calibration`` on a torch model.

        Defaults to ``needs_calibration``; passes whose need depends on an option (``quantize{method=gptq}``)
        override it, so callers such as the CLI can supply default calibration data only when it is used.
        """
        return self.needs_calibration

    def call(self, graph: "Graph", ctx: "PassContext") -> PassResult:
        raise NotImplementedError

    def ensures(self, graph: "Graph", ctx: "PassContext") -> None:
        """Raise PassError if the pass's postconditions do not hold (the verifier runs separately)."""

    # -- printing ----------------------------------------------------------------------------------
    def pipeline_text(self) -> str:
        """This pass as it would appear in a pipeline string (only the options the user gave)."""
        from .pipeline import format_value

        if not self.given_options:
            return self.name
        inner = ",".join(f"{k}={format_value(v)}" for k, v in self.given_options.items())
        return f"{self.name}{{{inner}}}"

    def __repr__(self) -> str:
        return f"<pass {self.pipeline_text()}>"
