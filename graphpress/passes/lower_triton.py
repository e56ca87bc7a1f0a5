"""``lower-triton``: run quantized linears on graphpress's Triton kernels (CUDA), keep torch on the CPU.

On a CUDA model every ``QuantizedLinear`` becomes a ``TritonQuantLinear`` (fused-dequant GEMV / split-K /
tensor-core paths, autotuned once per GPU and shape, cached on disk). On the CPU, or without Triton, the
pure-torch forward already has the same numerics, so nothing is swapped and the statistics say why: no
silent fallback. The IR is unchanged (the layers stay ``graphpress::QLinear``).

With ``gated_mlp`` (default on), an MLP module whose forward is provably ``down(act(gate(x)) * up(x))`` (act
SiLU or tanh-GELU) and whose gate and up are quantized alike becomes a ``GatedMLP`` (``backends/gated_mlp.py``):
gate and up run as one product with interleaved rows and the batch-1 kernel applies the activation and the
product in its epilogue, one launch and one elementwise kernel fewer per MLP.
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
    retraces = True  # the swapped modules hold other tensors than the graph's constants were bound to
    options = (Option("ignore", "list", [], "module-name substrings to leave on the torch path (| separated)"),
               Option("gated_mlp", "bool", True,
                      "run gate, up and the activation (SiLU or tanh-GELU) of gated MLPs as one product"))

    def call(self, graph: Graph, ctx: PassContext) -> PassResult:
        import logging

        import torch

        from ..backends.triton import lower_linear_modules, triton_available

        device = _device_of(graph.module)
        if device != "cuda" or not triton_available(torch.device(device)):
            reason = f"model is on {device}" if device != "cuda" else "triton is not installed"
            logging.getLogger("graphpress").info("lower-triton: nothing lowered (%s); torch path kept", reason)
            return PassResult(graph, False, {"lowered": 0, "reason": reason})
        gated = []
        if self.opts["gated_mlp"]:
            from ..backends.gated_mlp import install_gated_mlps, packed_gate_up

            gated = install_gated_mlps(graph.module, packed_gate_up, skip=tuple(self.opts["ignore"]))
        lowered = lower_linear_modules(graph.module, skip=self.opts["ignore"])
        chained = sum(bool(getattr(m, "follows_product", False)) for m in graph.module.modules())
        return PassResult(graph, bool(lowered or gated), {"lowered": len(lowered) + 2 * len(gated),
                                                          "gated_mlps": len(gated), "chained": chained})
