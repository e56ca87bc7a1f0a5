"""Structured pruning passes (``prune-channels``, ``prune-heads``), importance criteria, the planner and the
IR applier. Importing this package registers the passes and the built-in criteria, and the Hugging Face
fix-ups of the torch backend."""

from ...backends import hf_fixups as _hf_fixups  # noqa: F401 - registers the Hugging Face module fix-ups
from .allocate import PruningPlan, plan_pruning
from .apply import apply_keep_mask
from .importance import ImportanceContext, get_importance, list_importance, register_importance
from .prune_channels import PruneChannels, PruneHeads

__all__ = [
    "PruneChannels",
    "PruneHeads",
    "PruningPlan",
    "plan_pruning",
    "apply_keep_mask",
    "ImportanceContext",
    "register_importance",
    "get_importance",
    "list_importance",
]
