"""Depth compression of decoder LLMs: drop layers, merge adjacent layers, distill what was lost.

Passes (registered on import): ``prune-depth`` (ShortGPT block influence), ``merge-layers`` (CoMe
concatenation or LaCo collapse) and ``distill`` (CoMe's layer-wise distillation from the original model).
They restructure the user's Hugging Face model itself (``retraces``), keep its config, layer indices and
per-layer widths consistent, and :func:`load_pretrained` reloads a saved model whose layers differ in width.
"""

from .distill import Distill
from .hf_layers import LAYER_MAP_KEY, LAYER_WIDTHS_KEY, layer_map, load_pretrained
from .merge_layers import MergeLayers
from .prune_depth import PruneDepth, block_influence

__all__ = [
    "Distill",
    "MergeLayers",
    "PruneDepth",
    "block_influence",
    "layer_map",
    "load_pretrained",
    "LAYER_MAP_KEY",
    "LAYER_WIDTHS_KEY",
]
