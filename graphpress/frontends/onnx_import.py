"""The ONNX frontend: ``load_onnx(path or ModelProto) -> Graph`` (origin "onnx", canonical opset 18).

The steps, each in its own module:

1. :mod:`.onnx_safety` parses and vets the file before anything else is read (hostile files are refused
   with :class:`~graphpress.errors.UnsafeFileError`), then loads external data from the model's folder.
2. Model-local functions are inlined (``onnx.inliner``) so every op is visible to the passes.
3. :mod:`.onnx_opset` upgrades older opsets to 18 (keeping the file's opset when conversion fails).
4. :mod:`.onnx_reader` translates the protobuf into IR, keeping value names and initializer names;
   :mod:`.onnx_runtime_ops` rewrites (or refuses) onnxruntime-internal ops written into the default domain.
5. Shapes: ONNX shape inference through the ONNX backend's :func:`~graphpress.backends.onnx.infer_shapes`.
6. :mod:`.onnx_fold` folds ``Constant``/``ConstantOfShape``/shape arithmetic into IR constants.
7. :mod:`.onnx_normalize` turns ``Sum`` into ``Add`` chains and Gemm/MatMul-by-constant into ``Linear``.

What happened along the way (original opset, conversion problems, counts of folded and rewritten nodes,
ops no schema knows) is recorded in ``graph.metadata["onnx_import"]``.
"""

from __future__ import annotations

import os

import onnx
import onnx.inliner

from ..errors import BackendError, FrontendError
from ..ir import Graph, verify
from .onnx_fold import DEFAULT_FOLD_LIMIT, fold_constants
from .onnx_normalize import normalize
from .onnx_opset import CANONICAL_OPSET, default_opset, upgrade_opset
from .onnx_reader import proto_to_graph
from .onnx_runtime_ops import lower_runtime_ops
from .onnx_safety import ReadLimits, read_model

__all__ = ["load_onnx", "ReadLimits"]


_FOLD_ROUNDS = 8
"""Rounds of folding and shape inference at load; each round stops early once nothing more folds."""


def load_onnx(
    path_or_model: str | os.PathLike | onnx.ModelProto,
    *,
    limits: ReadLimits | None = None,
    fold_limit: int = DEFAULT_FOLD_LIMIT,
    target_opset: int = CANONICAL_OPSET,
) -> Graph:
    """Load an ONNX model (any exporter, opset 7+) into graphpress IR.

    ``limits`` bounds what a file may declare (see :class:`ReadLimits`); ``fold_limit`` is the largest
    constant (in elements) folding may create. A ``ModelProto`` argument is copied, never edited. Every value of the result has a shape (symbolic
    dims as strings) and a dtype, except outputs of ops that no ONNX schema describes (listed in
    ``graph.metadata["unknown_ops"]``) whose files declared none.
    """
    from ..backends.onnx.shapes import infer_shapes  # the backend imports this package's helpers

    if isinstance(path_or_model, onnx.ModelProto):
        source = onnx.ModelProto()
        source.CopyFrom(path_or_model)
    else:
        source = path_or_model
    model, _ = read_model(source, limits or ReadLimits())
    original = default_opset(model)
    if model.functions:
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as exc:
            raise FrontendError(f"could not inline the model's local functions: {exc}") from None
    model, opset, problem = upgrade_opset(model, target_opset)
    graph = proto_to_graph(model, opset)
    report: dict[str, object] = {"original_opset": original, "opset": opset}
    report["runtime_ops_lowered"] = lower_runtime_ops(graph)
    if problem:
        report["conversion_problem"] = problem
    try:
        infer_shapes(graph)
    except BackendError as exc:  # a sloppy exporter: keep what inference can still tell, and say so
        report["shape_inference_problem"] = str(exc)
        infer_shapes(graph, strict=False)
    report["folded"] = 0
    for _ in range(_FOLD_ROUNDS):
        # A folded shape makes its Reshape's output static, and that output's own Shape foldable in the next
        # round (tf2onnx's Tensordot and Einsum lowerings chain several such steps).
        folded = fold_constants(graph, max_elements=fold_limit)
        if not folded:
            break
        report["folded"] += folded
        infer_shapes(graph, strict="shape_inference_problem" not in report)
    report.update(normalize(graph))
    graph.metadata["onnx_import"] = report
    verify(graph)
    return graph
