"""Structured pruning passes (``prune-channels``, ``prune-heads``), importance criteria, the planner, the
IR applier and the recovery passes (``compensate-bias``, ``reconstruct``). Importing this package registers the passes and the built-in criteria, and the Hugging Face
fix-ups of the torch backend."""

from ...backends import hf_fixups as _hf_fixups  # noqa: F401 - registers the Hugging Face module fix-ups
from . import activation_importance as _activation_importance  # noqa: F401 - registers wanda/flap/come
from .allocate import PruningPlan, plan_pruning, standardize_scores
from .apply import apply_keep_mask
from .compensate import CompensateBias
from .importance import ImportanceContext, get_importance, list_importance, register_importance
from .prune_channels import PruneChannels, PruneHeads
from .reconstruct import Reconstruct

__all__ = [
    "PruneChannels",
    "PruneHeads",
    "CompensateBias",
    "Reconstruct",
    "standardize_scores",
    "PruningPlan",
    "plan_pruning",
    "apply_keep_mask",
    "ImportanceContext",
    "register_importance",
    "get_importance",
    "list_importance",
]
