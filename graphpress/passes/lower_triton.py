"""``lower-triton``: run quantized linears on graphpress's Triton kernels (CUDA), keep torch on the CPU.

On a CUDA model every ``QuantizedLinear`` becomes a ``TritonQuantLinear`` (fused-dequant GEMV / split-K /
tensor-core paths, autotuned once per GPU and shape, cached on disk). On the CPU, or without Triton, the
pure-torch forward already has the same numerics, so nothing is swapped and the statistics say why: no
silent fallback. The IR is unchanged (the layers stay ``graphpress::QLinear``).
"""

from __future__ import annotations

from ..ir import Graph
from .base import Pass, PassResult
from .context import PassContext
from .options import Option
from .registry import register_pass

__all__ = ["LowerTriton"]


def _device_of(module) -> str:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device.type
    return "cpu"


@register_pass
class LowerTriton(Pass):
    name = "lower-triton"
    summary = "Run quantized Linears on graphpress's Triton kernels on CUDA (a reported no-op on the CPU)."
    origins = frozenset({"torch"})
    preserves = frozenset({"*"})
    options = (Option("ignore", "list", [], "module-name substrings to leave on the torch path (| separated)"),)

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        import logging

        from ..backends.triton import lower_linear_modules, triton_available

        device = _device_of(graph.module)
        if device != "cuda" or not triton_available():
            reason = f"model is on {device}" if device != "cuda" else "triton is not installed"
            logging.getLogger("graphpress").info("lower-triton: nothing lowered (%s); torch path kept", reason)
            return PassResult(graph, False, {"lowered": 0, "reason": reason})
        lowered = lower_linear_modules(graph.module, skip=self.opts["ignore"])
        return PassResult(graph, bool(lowered), {"lowered": len(lowered)})
