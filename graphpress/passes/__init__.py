"""Pass infrastructure (contract, options, registry, pipelines, manager) and the built-in passes."""

from .base import Pass, PassResult
from .context import PassContext
from .manager import PassManager, PassRecord, PipelineReport
from .options import Option
from .pipeline import format_pipeline, parse_pipeline, resolve_passes
from .registry import create_pass, get_pass_class, list_passes, register_pass

__all__ = [
    "Pass",
    "PassResult",
    "PassContext",
    "PassManager",
    "PassRecord",
    "PipelineReport",
    "Option",
    "register_pass",
    "create_pass",
    "get_pass_class",
    "list_passes",
    "parse_pipeline",
    "format_pipeline",
    "resolve_passes",
]
