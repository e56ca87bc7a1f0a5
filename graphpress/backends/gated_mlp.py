"""Gated MLPs as two products: ``down(act(gate(x)) * up(x))`` with gate, up and the activation in one layer.

Decoding at batch 1 runs every MLP as three launches after fusion of gate and up (the fused product, an
elementwise ``act(gate) * up`` kernel, the down product).  A :class:`GatedMLP` makes it two: its
``gate_up`` layer (:meth:`TritonQuantLinear.gated_from_quantized`) holds the two weights with interleaved
rows, so the batch-1 kernel (int4 or int8 words) finishes each ``(gate, up)`` pair in its epilogue and
writes the activated half.  The MLP module is replaced as a whole, so it is only done where its forward is *proven*
to be exactly that computation: :func:`gated_mlp_layout` traces the module with ``torch.fx`` and accepts
only the graph ``down(act(gate(x)) * up(x))`` (either operand order) whose ``act`` computes SiLU (Llama,
Mistral, Qwen, OLMo, Cohere, Granite, StableLM) or tanh-GELU (Gemma's GeGLU), checked numerically, so
``nn.SiLU``, Hugging Face's activation classes and ``F.silu`` all pass; exact GELU and others do not.
"""

from __future__ import annotations

import functools
import logging
import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GatedMLP", "gated_mlp_layout", "install_gated_mlps", "packed_gate_up"]

_log = logging.getLogger("graphpress")


class GatedMLP(nn.Module):
    """``down(gate_up(x))`` where ``gate_up`` returns ``act(gate(x)) * up(x)``."""

    def __init__(self, gate_up: nn.Module, down: nn.Module, replaces: str = "") -> None:
        super().__init__()
        self.gate_up = gate_up
        self.down = down
        self.replaces = replaces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.gate_up(x))

    def extra_repr(self) -> str:
        return f"replaces={self.replaces}" if self.replaces else ""


_REFERENCES = {"silu": F.silu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh")}


def _activation_name(fn: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """``"silu"`` or ``"gelu_tanh"`` when ``fn`` computes it (on a probe from -6 to 6), else None."""
    probe = torch.linspace(-6.0, 6.0, 97)
    try:
        with torch.no_grad():
            got = fn(probe.clone())
    except Exception:  # noqa: BLE001 - whatever fails on a probe is none of them
        return None
    for name, reference in _REFERENCES.items():
        if isinstance(got, torch.Tensor) and got.shape == probe.shape and torch.allclose(got, reference(probe), atol=1e-6):
            return name
    return None


class _ChildrenAsLeaves(torch.fx.Tracer):
    """Traces only the module's own forward: every submodule is one call, whatever it is (an ``nn.Linear``, a
    quantized layer, an activation class)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return True


def _could_be_gated(module: nn.Module) -> bool:
    """Cheap filter before tracing: three to five direct children, at least three of them linear-like (an
    ``in_features`` attribute), so whole models and decoder layers are never traced."""
    children = list(module.children())
    return 3 <= len(children) <= 5 and sum(hasattr(c, "in_features") for c in children) >= 3


def gated_mlp_layout(mlp: nn.Module) -> tuple[str, str, str, str] | None:
    """``(gate, up, down, activation)`` if ``mlp(x)`` is exactly ``down(act(gate(x)) * up(x))`` with ``act`` SiLU
    or tanh-GELU (submodule names, and ``"silu"`` or ``"gelu_tanh"``), else None."""
    if not _could_be_gated(mlp):
        return None
    try:
        traced = torch.fx.GraphModule(mlp, _ChildrenAsLeaves().trace(mlp))
    except Exception:  # noqa: BLE001 - untraceable forward code: not provably the pattern
        return None
    nodes = [n for n in traced.graph.nodes if n.op not in ("placeholder", "output")]
    inputs = [n for n in traced.graph.nodes if n.op == "placeholder"]
    output = next(n for n in traced.graph.nodes if n.op == "output")
    if len(inputs) != 1 or len(nodes) != 5:
        return None
    x = inputs[0]
    down = output.args[0]
    if not (isinstance(down, torch.fx.Node) and down.op == "call_module" and len(down.args) == 1 and not down.kwargs):
        return None
    product = down.args[0]
    if not (isinstance(product, torch.fx.Node) and product.op == "call_function"
            and product.target in (operator.mul, torch.mul) and len(product.args) == 2):
        return None
    for activated, up in (product.args, product.args[::-1]):
        if not (isinstance(activated, torch.fx.Node) and isinstance(up, torch.fx.Node)):
            continue
        if not (up.op == "call_module" and up.args == (x,) and not up.kwargs and len(activated.args) == 1):
            continue
        gate = activated.args[0]
        if not (isinstance(gate, torch.fx.Node) and gate.op == "call_module" and gate.args == (x,) and not gate.kwargs):
            continue
        if activated.op == "call_module":
            act = traced.get_submodule(activated.target)
        elif activated.op == "call_function" and activated.kwargs.get("inplace", False) is False:
            act = functools.partial(activated.target, **activated.kwargs)
        else:
            continue
        activation = _activation_name(act) if gate.target != up.target else None
        if activation is not None:
            return gate.target, up.target, down.target, activation
    return None


def install_gated_mlps(model: nn.Module, make_gate_up: Callable[[nn.Module, nn.Module, str], nn.Module | None],
                       skip: tuple[str, ...] = ()) -> list[str]:
    """Replace every submodule of ``model`` that :func:`gated_mlp_layout` accepts by a :class:`GatedMLP`.

    ``make_gate_up(gate, up, activation)`` builds the fused layer from the two modules, or returns None to
    leave that MLP alone (formats it cannot fuse).  Returns the qualified names replaced."""
    replaced = []
    for name, module in list(model.named_modules()):
        if not name or any(s in name for s in skip) or isinstance(module, GatedMLP):
            continue
        layout = gated_mlp_layout(module)
        if layout is None:
            continue
        gate_name, up_name, down_name, activation = layout
        gate_up = make_gate_up(module.get_submodule(gate_name), module.get_submodule(up_name), activation)
        if gate_up is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, GatedMLP(gate_up, module.get_submodule(down_name),
                                        replaces=f"{type(module).__name__}({gate_name}, {up_name}, {down_name}, "
                                                 f"{activation})"))
        replaced.append(name)
    if replaced:
        _log.info("graphpress: %d gated MLPs now run gate, up and their activation as one product (e.g. %s)",
                  len(replaced), replaced[0])
    return replaced


def packed_gate_up(gate: Any, up: Any, activation: str = "silu") -> nn.Module | None:
    """The Triton gated layer for two packed-format modules of one format, else None.  Gate and up fused
    into one quantized layer beforehand (``fuse-gate-up`` then ``quantize``) are taken apart again: each
    sibling's rows of the fused layer."""
    from graphpress.backends.fused_linear import sibling_rows
    from graphpress.backends.triton.linear import TritonQuantLinear
    from graphpress.backends.triton.lowering import is_packed_quantized

    gate, up = sibling_rows(gate), sibling_rows(up)
    if not (is_packed_quantized(gate) and is_packed_quantized(up)):
        return None
    if (gate.bits, gate.group, gate.in_features, gate.out_features) != (up.bits, up.group, up.in_features, up.out_features):
        return None
    return TritonQuantLinear.gated_from_quantized(gate, up, activation=activation)
