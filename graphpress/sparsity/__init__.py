"""Unstructured and N:M weight sparsity: masks, methods (magnitude, Wanda, SparseGPT), layer-adaptive
allocation (OWL, LAMP), a compact sparse checkpoint format, and CUDA 2:4 lowering."""

from graphpress.sparsity.allocation import lamp_ratios, outlier_fraction, owl_block_ratios, whole_weight_ratios
from graphpress.sparsity.api import ALLOCATIONS, METHODS, SparsityReport, sparsify_model
from graphpress.sparsity.lower24 import Sparse24Lowering, lower_sparse24
from graphpress.sparsity.magnitude import magnitude_prune
from graphpress.sparsity.masks import SparsityPattern, keep_mask, parse_pattern, satisfies, sparsity_of
from graphpress.sparsity.sparsegpt import sparsegpt_prune
from graphpress.sparsity.storage import SparseCheckpointInfo, load_sparse, pack_sparse, save_sparse, unpack_sparse
from graphpress.sparsity.wanda import wanda_prune, wanda_scores

__all__ = [
    "ALLOCATIONS",
    "METHODS",
    "Sparse24Lowering",
    "SparseCheckpointInfo",
    "SparsityPattern",
    "SparsityReport",
    "keep_mask",
    "lamp_ratios",
    "load_sparse",
    "lower_sparse24",
    "magnitude_prune",
    "outlier_fraction",
    "owl_block_ratios",
    "pack_sparse",
    "parse_pattern",
    "satisfies",
    "save_sparse",
    "sparsegpt_prune",
    "sparsify_model",
    "sparsity_of",
    "unpack_sparse",
    "wanda_prune",
    "wanda_scores",
    "whole_weight_ratios",
]
