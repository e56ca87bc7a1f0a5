"""Calling a :class:`~graphpress.testing.zoo.ZooCase`'s model and checking a compressed copy of it: the pieces
the pruning acceptance tests and ``benchmarks/arch_sweep.py`` share (one definition, so both judge alike)."""

from __future__ import annotations

import os
import tempfile

import torch

from .zoo import ZooCase

__all__ = ["call_case", "optimize_kwargs", "onnx_matches", "random_calibration"]


def call_case(model: torch.nn.Module, case: ZooCase) -> list[torch.Tensor]:
    """``model``'s outputs on ``case``'s inputs (no grad), flattened to a list of tensors."""
    from graphpress.backends.evaluate import flatten_outputs

    with torch.no_grad():
        if isinstance(case.inputs, dict):
            return flatten_outputs(model(**case.inputs, **case.call_kwargs))
        return flatten_outputs(model(*case.inputs))


def optimize_kwargs(case: ZooCase) -> dict:
    """The ``example_inputs``/``example_kwargs`` that ``graphpress.optimize`` takes for ``case``."""
    if isinstance(case.inputs, dict):
        return {"example_inputs": (), "example_kwargs": {**case.inputs, **case.call_kwargs}}
    return {"example_inputs": case.inputs}


def onnx_matches(model: torch.nn.Module, case: ZooCase) -> float:
    """Export ``model`` through graphpress, run it in onnxruntime; the relative error of the first output."""
    import onnx

    import graphpress
    from graphpress.backends.evaluate import relative_error
    from graphpress.backends.onnx.runtime import run_onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.onnx")
        kwargs = optimize_kwargs(case)
        graphpress.export_onnx(model, path, kwargs["example_inputs"], example_kwargs=kwargs.get("example_kwargs"))
        proto = onnx.load(path)
        inputs = case.inputs if isinstance(case.inputs, dict) else list(case.inputs)
        if isinstance(inputs, dict):
            names = [i.name for i in proto.graph.input]
            inputs = {k: v for k, v in inputs.items() if k in names}
        got = torch.as_tensor(run_onnxruntime(proto, inputs)[0])
    return relative_error([got], [call_case(model, case)[0]])  # integer outputs (EnCodec's codes) must be equal


def random_calibration(case: ZooCase, batches: int = 3, seed: int = 10) -> list[dict[str, torch.Tensor]]:
    """``batches`` calibration input dicts shaped like ``case``'s inputs with fresh random values.

    Float inputs (pixels, audio features) are redrawn from a normal distribution, token ids uniformly below
    the largest id of the example, and masks (integer inputs named ``*mask*``) are kept, so calibration walks
    the same code paths (padding included) as the example without repeating it.
    """
    if not isinstance(case.inputs, dict):
        raise TypeError(f"{case.name}: calibration needs keyword inputs, got a positional tuple")
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        batch = {}
        for key, value in case.inputs.items():
            if value.is_floating_point():
                batch[key] = torch.randn(value.shape, generator=generator, dtype=value.dtype)
            elif "mask" in key:
                batch[key] = value.clone()
            else:
                batch[key] = torch.randint(0, int(value.max()) + 1, value.shape, generator=generator,
                                           dtype=value.dtype)
        out.append(batch)
    return out
