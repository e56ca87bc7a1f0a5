"""ONNX files of tiny models written the ways users' files are written, for the frontend sweep.

graphpress's own tests mostly read files that graphpress's emitter wrote. Real files come from
``torch.onnx.export`` (the TorchScript "legacy" exporter and the dynamo exporter, at several opsets), in
float16, with weights as external data, and after onnxruntime's offline graph optimization (which
writes fused ``com.microsoft`` ops). Each function here writes one such file and returns the inputs to
run it with, keyed by graph input name; nothing downloads weights (the models come from configs).
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np
import onnx
import torch
from torch import nn

from .zoo import ZooCase

__all__ = ["PositionalModel", "positional", "export_torch", "save_external", "ort_optimize"]


class PositionalModel(nn.Module):
    """A zoo model called with positional tensors and returning one tensor (logits / last hidden state).

    The legacy exporter cannot pass keyword-only inputs nor return model-output dataclasses; a fixed
    positional signature also makes the graph input names predictable for every exporter.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], call_kwargs: dict):
        super().__init__()
        self.model, self.names, self.call_kwargs = model, list(names), dict(call_kwargs)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, tensors)), **self.call_kwargs)
        if isinstance(out, torch.Tensor):
            return out
        return out[0]


def positional(case: ZooCase) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Wrap ``case`` for export; returns the module and its inputs in call order.

    Language models get an explicit all-ones ``attention_mask``: without one transformers looks for
    packed sequences with ``torch.diff``, which the legacy exporter has no symbolic for.
    """
    if isinstance(case.inputs, dict):
        inputs = dict(case.inputs)
        if "input_ids" in inputs and "attention_mask" not in inputs:
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        return PositionalModel(case.model, list(inputs), case.call_kwargs).eval(), inputs
    inputs = {f"input_{i}": t for i, t in enumerate(case.inputs)}
    return case.model, inputs


def export_torch(case: ZooCase, path: str, *, dynamo: bool, opset: int, fp16: bool = False,
                 external_data: bool = False) -> dict[str, np.ndarray]:
    """Write ``case`` with ``torch.onnx.export``; returns the inputs (numpy, by graph input name).

    ``fp16`` converts the model (and its float inputs) to float16 before export, as users do for edge
    runtimes; ``external_data`` keeps the weights in a file beside the model.
    """
    if opset < 14 and hasattr(case.model, "set_attn_implementation"):
        case.model.set_attn_implementation("eager")  # scaled_dot_product_attention needs opset 14
    module, inputs = positional(case)
    if fp16:
        module = module.half()
        inputs = {k: (v.half() if v.is_floating_point() else v) for k, v in inputs.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        kwargs = {"dynamo": dynamo, "opset_version": opset, "input_names": list(inputs), "output_names": ["output"]}
        if dynamo:
            kwargs.update(external_data=external_data, verbose=False)
        torch.onnx.export(module, tuple(inputs.values()), path, **kwargs)
    if external_data and not dynamo:
        save_external(path, path)
    if fp16:
        module.float()  # the zoo case is shared with later exports
    return {k: v.numpy() for k, v in inputs.items()}


def save_external(source: str, target: str) -> None:
    """Rewrite ``source`` as ``target`` with every initializer in ``<target>.data`` beside it."""
    model = onnx.load(source)
    location = os.path.basename(target) + ".data"
    data = os.path.join(os.path.dirname(os.path.abspath(target)), location)
    if os.path.exists(data):
        os.unlink(data)
    onnx.save_model(model, target, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
                    size_threshold=0)


def ort_optimize(source: str, target: str, level: str) -> None:
    """Write what onnxruntime's offline optimizer makes of ``source`` at ``level`` (basic | extended | all).

    Extended and all fuse patterns into ``com.microsoft`` ops (FusedConv, SkipLayerNormalization,
    FastGelu, ...), as users' "optimized" files from onnxruntime's tools contain.
    """
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.optimized_model_filepath = target
    options.log_severity_level = 3
    ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
