"""Run a graph on example inputs, whatever its origin: the torch module it is bound to, or onnxruntime.

The pass manager uses this for its numeric check after each pass, so a pass is judged by what the model a
backend hands back actually computes.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.utils import _pytree as pytree

from ..errors import BackendError
from ..ir import Graph

__all__ = ["evaluate", "evaluate_in_float32", "is_meta_graph", "flatten_outputs", "relative_error", "submodule_stack",
           "innermost_submodule"]


def is_meta_graph(graph: Graph) -> bool:
    """True when weights live on the meta device (shapes only): nothing can be run."""
    return any(v.param.is_meta for v in graph.constants if v.param is not None)


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output (tuples, dicts, Hugging Face ModelOutput), in a stable order."""
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    leaves, _ = pytree.tree_flatten(out)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def evaluate(graph: Graph, inputs: tuple, kwargs: dict | None = None) -> list[torch.Tensor]:
    """Outputs of the model the graph describes, as float tensors on the CPU."""
    if graph.origin == "torch" and graph.module is not None:
        from .torch_module import finalize_module

        module = finalize_module(graph)
        with torch.no_grad():
            try:
                out = module(*inputs, **(kwargs or {}))
            except RuntimeError as error:
                raise _located(module, inputs, kwargs, error) from error
        return [t.detach().float().cpu() for t in flatten_outputs(out)]
    from .onnx import run_onnxruntime

    outs = run_onnxruntime(graph, list(inputs))
    return [torch.as_tensor(o).float() for o in outs]


def evaluate_in_float32(graph: Graph, inputs: tuple, kwargs: dict | None = None) -> list[torch.Tensor]:
    """:func:`evaluate` with every floating parameter, buffer and input of a torch model in float32, then each
    tensor put back in its own dtype (float16/bfloat16 -> float32 -> back is exact).  Tells an exact rewrite
    from a wrong one in a half-precision model, where rounding alone moves deep outputs by percents."""
    module = graph.module
    if graph.origin != "torch" or module is None:
        return evaluate(graph, inputs, kwargs)
    saved: list[tuple[torch.Tensor, torch.dtype]] = []
    try:
        for tensor in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
            if tensor.is_floating_point() and tensor.dtype != torch.float32:
                saved.append((tensor, tensor.dtype))
                tensor.data = tensor.data.float()
        cast = lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
        return evaluate(graph, tuple(pytree.tree_map(cast, list(inputs))),
                        pytree.tree_map(cast, dict(kwargs or {})))
    finally:
        for tensor, dtype in saved:
            tensor.data = tensor.data.to(dtype)
        for value in graph.constants:
            value.sync_from_param()


@contextmanager
def submodule_stack(module: torch.nn.Module, done: Counter | None = None) -> Iterator[list[str]]:
    """While active, the list it yields holds the names of the submodules whose forward is running,
    outermost first; after an exception it still holds where the failure happened (forward hooks that
    would pop never ran). Hooks are removed on exit. Used to say which submodule of an edited model broke.
    ``done``, when given, counts the forward calls each submodule completed (how far a failing run got)."""
    stack: list[str] = []
    names = {id(m): name for name, m in module.named_modules()}

    def enter(m, *_):
        stack.append(names.get(id(m), "?"))

    def leave(m, *_):
        name = stack.pop()
        if done is not None:
            done[name] += 1

    handles = [m.register_forward_pre_hook(enter) for m in module.modules()]
    handles += [m.register_forward_hook(leave) for m in module.modules()]
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def innermost_submodule(stack: list[str]) -> str:
    """The innermost named submodule on a :func:`submodule_stack` ('' when only the root ran)."""
    return next((n for n in reversed(stack) if n), "")


def _located(module: torch.nn.Module, inputs: tuple, kwargs: dict | None, error: RuntimeError) -> BackendError:
    """``error`` as a :class:`BackendError` naming the innermost submodule it came from.

    A torch error inside a model's forward (a reshape to a width read from another tensor) says nothing of
    where; re-running with hooks that track the module stack finds it, so the user can leave it out
    (``ignore=``). Only done after a failure, so a working model pays nothing."""
    failed: list[str] = []
    with submodule_stack(module) as stack:
        try:
            with torch.no_grad():
                module(*inputs, **(kwargs or {}))
        except Exception:  # noqa: BLE001 (the same failure again: the stack now holds where it happened)
            failed = list(stack)
    where = innermost_submodule(failed)
    if not where:
        return BackendError(f"the edited {type(module).__name__} no longer runs: {error}")
    kind = type(module.get_submodule(where)).__name__
    return BackendError(
        f"the edited {type(module).__name__} no longer runs: {where} ({kind}) failed: {error}. Its forward code "
        f"probably computes a size the traced graph does not record (e.g. reshape to a width read from another "
        f"tensor); leave it out of the pass with ignore={where}* (or report the pattern)")


def relative_error(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """max |a - e| / max |e| over all outputs (inf when shapes differ or values are not finite)."""
    worst = 0.0
    if len(actual) != len(expected):
        return float("inf")
    for a, e in zip(actual, expected):
        if a.shape != e.shape:
            return float("inf")
        if a.dtype == torch.bool or not torch.is_floating_point(e):
            worst = max(worst, 0.0 if torch.equal(a.to(e.dtype), e) else float("inf"))
            continue
        if not torch.isfinite(a).all() and torch.isfinite(e).all():
            return float("inf")
        scale = e.abs().max().item() if e.numel() else 0.0
        diff = (a - e).abs().max().item() if e.numel() else 0.0
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst
