"""The ONNX backend: write a graphpress graph as an ONNX model, run it in onnxruntime, infer its shapes.

``to_onnx`` / ``save_onnx`` emit (macro ops expanded through a registry that other backends' ops extend with
``@register_emitter``), ``run_onnxruntime`` runs on the CPU, ``infer_shapes`` refreshes every value's shape
and dtype after a pass changed parameters.
"""

from .emit import to_onnx
from .registry import EmitContext, register_emitter
from .runtime import run_onnxruntime
from .save import save_onnx
from .shapes import infer_shapes

__all__ = ["to_onnx", "save_onnx", "run_onnxruntime", "infer_shapes", "register_emitter", "EmitContext"]
