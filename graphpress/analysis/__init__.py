"""Analyses: facts computed from a graph and cached on it (``graph.analyses``) until a pass invalidates them."""

from .cache import cached_analysis, invalidate
from .flops import count_flops, flops_by_scope
from .layers import LayerInfo, layer_summary

__all__ = ["cached_analysis", "invalidate", "count_flops", "flops_by_scope", "LayerInfo", "layer_summary"]
