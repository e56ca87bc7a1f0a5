"""Gradients for the Taylor criterion: backpropagate the loss of the model on calibration batches.

For a causal language model the loss is the next-token loss on the calibration tokens (``labels =
input_ids``); for any other model, whose task loss we can't know, it is the mean square of its first
output (a proxy that still ranks weights by their effect on the output). Gradients are summed over
batches, in float32, and returned by parameter name; the model is left with no gradients attached.
"""

from __future__ import annotations

import torch

from ...backends.evaluate import flatten_outputs
from ...calibration.inputs import calibration_batches
from ...errors import PassError
from ...ir import Graph

__all__ = ["collect_gradients"]


def _loss(module: torch.nn.Module, batch: dict) -> torch.Tensor:
    config = getattr(module, "config", None)
    if config is not None and "input_ids" in batch and hasattr(module, "get_output_embeddings") and \
            module.get_output_embeddings() is not None:
        return module(**batch, labels=batch["input_ids"], use_cache=False).loss
    outputs = flatten_outputs(module(**batch) if isinstance(batch, dict) else module(*batch))
    return outputs[0].float().pow(2).mean()


def collect_gradients(graph: Graph, calibration, tokenizer=None, max_batches: int = 8) -> dict[str, torch.Tensor]:
    """``{parameter name: summed gradient}`` of the graph's torch module over calibration batches."""
    module = graph.module
    if graph.origin != "torch" or module is None:
        raise PassError("importance=taylor needs a torch model (gradients); use l1/l2 for ONNX models")
    if calibration is None:
        raise PassError("importance=taylor needs calibration data: pass calibration=... (token windows "
                        "[n, seqlen], strings with a tokenizer, or input dicts)")
    batches = calibration_batches(calibration, tokenizer=tokenizer, batch_size=1)[:max_batches]
    params = dict(module.named_parameters(remove_duplicate=False))
    flags = {name: p.requires_grad for name, p in params.items()}
    was_training = module.training
    try:
        module.eval()
        for p in params.values():
            p.requires_grad_(p.dtype.is_floating_point)
            p.grad = None
        for batch in batches:
            _loss(module, batch).backward()
        grads = {name: p.grad.detach().float().clone() for name, p in params.items() if p.grad is not None}
    finally:
        for name, p in params.items():
            p.grad = None
            p.requires_grad_(flags[name])
        module.train(was_training)
    return grads
