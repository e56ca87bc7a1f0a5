"""``reconstruct``: least-squares refit of the kept input columns of every pruned linear.

    graphpress.optimize(model, "prune-channels{ratio=0.2,importance=flap},reconstruct", calibration=windows)

After input channels ``R`` of ``y = W x + b`` are removed, the kept columns ``K`` are refit to the dense
layer's outputs on the calibration data (DESIGN.md section 4, least-squares reconstruction):

* ``bias=true`` (default) fits an affine map: with ``C`` the covariance of the dense inputs and ``mu`` their
  mean, ``W'_K = W C[:, K] (C_KK + lambda I)^-1`` and ``b' = b + W mu - W'_K mu_K``. This contains FLAP's bias
  compensation (when ``W'_K = W_K`` it is exactly ``b + W_R mu_R``), so after ``compensate-bias`` the bias is
  recomputed rather than added to twice.
* ``bias=false`` keeps the bias and solves ``W'_K = W G[:, K] (G_KK + lambda I)^-1`` on the raw Gram matrix
  ``G = X^T X`` (undoing an earlier ``compensate-bias``: the raw fit already carries the means).

``lambda = damp * mean(diag)`` is a small ridge term against near-singular Gram matrices. The Gram matrices
and the pre-pruning weights come from the pruning pass, which sees ``reconstruct`` later in the pipeline and
gathers the statistics with ``X^T X`` (:mod:`.removed_inputs`).
"""

from __future__ import annotations

import torch

from ...errors import PassError
from ...ir import Graph
from ..base import Pass, PassResult
from ..context import PassContext
from ..options import Option
from ..registry import register_pass
from .compensate import add_to_bias, linear_node
from .removed_inputs import RECORDS_KEY, RemovedInputs

__all__ = ["Reconstruct", "refit"]


def refit(record: RemovedInputs, damp: float, with_bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(new kept columns [out, |K|], change of the bias [out])`` for one record, in float64."""
    stats = record.stats
    if stats.gram is None:
        raise PassError(f"reconstruct: no Gram matrix for {record.module}; the pruning pass collected none")
    n = max(stats.tokens, 1)
    kept = torch.as_tensor(record.kept)
    weight = record.weight.double()
    mean = stats.mean.double()
    second = stats.gram.double() / n
    target = second - torch.outer(mean, mean) if with_bias else second
    block = target[kept][:, kept]
    ridge = damp * float(block.diagonal().mean().clamp_min(1e-12))
    block = block + ridge * torch.eye(block.shape[0], dtype=block.dtype)
    # W'_K = W T[:, K] (T_KK + lambda I)^-1, solved as the transposed system (symmetric block).
    new = torch.linalg.solve(block, (weight @ target[:, kept]).T).T
    bias = weight @ mean - new @ mean[kept] if with_bias else torch.zeros(weight.shape[0], dtype=weight.dtype)
    if record.bias_added is not None:
        bias = bias - record.bias_added.double()  # compensate-bias's share is replaced, not added twice
    return new, bias


@register_pass
class Reconstruct(Pass):
    name = "reconstruct"
    summary = ("Least-squares refit of the kept input columns of each linear pruned by prune-channels/prune-heads "
               "to the dense layer's outputs on calibration data (ridge; affine with bias=true); needs calibration.")
    origins = frozenset({"torch"})
    needs_calibration = True
    options = (
        Option("damp", "float", 0.01, "ridge term as a fraction of the mean diagonal of the Gram matrix",
               low=0.0, low_inclusive=False),
        Option("bias", "bool", True, "fit a bias too (affine least squares; creates the bias where missing)"),
    )

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        records = ctx.extras.get(RECORDS_KEY)
        if records is None:
            raise PassError("reconstruct found no pruning to refit: put it after prune-channels or prune-heads in "
                            "the same pipeline, with calibration=...")
        done = 0
        for key in list(records):
            record = records.pop(key)  # a refit consumes the record: a second reconstruct has nothing to redo
            node = linear_node(graph, key)
            weight = node.input(1) if node is not None else None
            if weight is None or tuple(weight.param.shape) != (record.weight.shape[0], record.kept.size):
                raise PassError(f"reconstruct: {key} no longer has the shape its pruning left; run reconstruct "
                                "right after the pruning pass")
            new, bias = refit(record, self.opts["damp"], self.opts["bias"])
            weight.param.data = new.to(dtype=weight.param.dtype, device=weight.param.data.device).contiguous()
            weight.sync_from_param()
            if self.opts["bias"] or record.bias_added is not None:
                add_to_bias(graph, key, bias)
            done += 1
        return PassResult(graph, done > 0, {"linears": done})
