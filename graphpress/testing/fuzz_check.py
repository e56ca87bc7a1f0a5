"""The fuzzing property: a generated network survives a generated pipeline, in torch and in onnxruntime.

Kept apart from the generators (:mod:`graphpress.testing.fuzz`) so that the CI test, the long run in
``benchmarks/fuzz_long.py`` and a person replaying one failing ``NetSpec`` all check the same thing.
"""

from __future__ import annotations

import torch

from ..errors import InfeasibleRequestError
from .fuzz import FuzzCase

__all__ = ["check_case"]


def check_case(case: FuzzCase, pipeline: str, *, rtol: float = 1e-4) -> str:
    """Run ``pipeline`` on the case through ``graphpress.optimize`` and check the result end to end.

    Asserts that the compressed model runs with unchanged output shapes, and that its ONNX export runs in
    onnxruntime and matches the compressed torch model (so a quantized model is compared with its own
    quantized torch form, not with the float original) within ``rtol`` of the output's scale.

    A generated ratio can ask for more than a small network allows (60% of a two-head attention). The
    library must then refuse with :class:`InfeasibleRequestError` and leave the model as it was; that is
    checked too, and reported as ``"refused"`` (``"ok"`` otherwise) so long runs can count refusals.
    """
    import numpy as np
    import onnxruntime as ort

    from ..api import optimize
    from ..backends.onnx import to_onnx
    from ..frontends.torch_export import trace

    with torch.no_grad():
        expected_shape = case.model(*case.example_inputs).shape
    before = {name: tensor.clone() for name, tensor in case.model.state_dict().items()}
    try:
        result = optimize(case.model, pipeline, example_inputs=case.example_inputs)
    except InfeasibleRequestError:
        after = case.model.state_dict()
        assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before), \
            "a refused request changed the model"
        return "refused"
    with torch.no_grad():
        output = result(*case.example_inputs)
    assert output.shape == expected_shape, f"output shape {tuple(output.shape)} != {tuple(expected_shape)}"
    assert torch.isfinite(output).all(), "the compressed model produces non-finite outputs"
    proto = to_onnx(trace(result, case.example_inputs))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), case.example_inputs)}
    (onnx_output,) = session.run(None, feeds)
    scale = float(output.abs().max()) + 1e-6
    error = float(np.abs(onnx_output - output.numpy()).max())
    assert error <= rtol * scale, f"onnxruntime differs from torch: max abs error {error:.3g}, scale {scale:.3g}"
    return "ok"
