"""The torch frontend: ``trace(model, example_inputs) -> Graph`` through ``torch.export``.

Steps, and why each one:

1. Work on a deep copy of the model (unless ``inplace=True``), in eval mode. The graph's ``module`` is
   that copy and every weight and buffer in the IR is bound to it by its state_dict name, so passes edit
   the copy and the user's model is never left half-edited.
2. ``torch.export.export(strict=False)``: the only tracer that handles current Hugging Face models
   (``torch.fx.symbolic_trace`` fails on them). HF models get ``use_cache=False`` so no cache object
   enters the graph. A model whose parameters are all on the meta device is traced with meta inputs:
   the analyzer can then work on 7B-70B shapes without the weights in memory.
3. :func:`.torch_lowering.lower_exported_program` maps the exported graph to IR ops. It is tried first on
   the graph as exported (pre-dispatch aten): when every op there has a rule this saves the decomposition
   pass, about 40% of the time on a 7B-shaped model. At the first op without a rule the program is
   decomposed with ``ep.run_decompositions(table)``, the table being torch's defaults minus every op
   graphpress has a rule for (:func:`.torch_registry.decomposition_table`), so high-level layers stay
   whole and the rest becomes core aten, and lowered again.

Export failures are re-raised as :class:`~graphpress.errors.FrontendError` with torch's first line and a
hint about the usual cause.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import os
import re
import sys
import time
import traceback
import warnings
from typing import Any

import torch

from ..errors import DataDependentError, FrontendError, StateMutationError
from ..ir import Graph
from .torch_example_values import ValueRead, describe_reads, example_values_as_constants
from .torch_lowering import checks_only, lower_exported_program
from .torch_noop_conversions import unchanged_conversions_skipped
from .torch_registry import decomposition_table
from .torch_side_branches import keep_side_branches
from .torch_substitutions import substituted_forwards

__all__ = ["trace", "export_program", "export_onnx"]

_USER_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _is_meta_model(model: torch.nn.Module) -> bool:
    tensors = list(model.parameters()) + list(model.buffers())
    return bool(tensors) and all(t.device.type == "meta" for t in tensors)


def _to_meta(value: Any) -> Any:
    return torch.utils._pytree.tree_map(lambda v: v.to("meta") if isinstance(v, torch.Tensor) else v, value)


def _uses_cache(model: torch.nn.Module) -> bool:
    """Whether a Hugging Face model takes ``use_cache``: a parameter of its forward, or a ``**kwargs`` forward of
    a model whose config has the option. A ``**kwargs`` alone is no sign: CLAP hands them on to an audio encoder
    that refuses the keyword."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    if "use_cache" in parameters:
        return True
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    return has_kwargs and getattr(getattr(model, "config", None), "use_cache", None) is not None


def _is_hf_model(model: torch.nn.Module) -> bool:
    return any(cls.__module__.startswith("transformers.") for cls in type(model).__mro__)


def _split_inputs(example_inputs: Any, example_kwargs: dict | None) -> tuple[tuple, dict]:
    if isinstance(example_inputs, dict):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, torch.Tensor):
        args, kwargs = (example_inputs,), {}
    else:
        args, kwargs = tuple(example_inputs), {}
    kwargs.update(example_kwargs or {})
    return args, kwargs


def _user_location(message: str, error: BaseException | None = None) -> str:
    """Where in the model the trace broke: the last frame outside torch named in the message, else the deepest
    such frame of the exception's own traceback (torch's data-dependent guard errors name no frame in their
    text)."""
    frames = [(f, line) for f, line in _USER_FRAME.findall(message) if "/torch/" not in f]
    if not frames and error is not None:
        seen: set[int] = set()
        while error is not None and id(error) not in seen:  # the raised error and the ones it wraps
            seen.add(id(error))
            frames = [(frame.filename, str(frame.lineno)) for frame in traceback.extract_tb(error.__traceback__)
                      if "/torch/" not in frame.filename and "/graphpress/" not in frame.filename] or frames
            error = error.__cause__ or error.__context__
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else "an unknown location"


def _is_data_dependent(message: str) -> bool:
    """Whether an export failed on a tensor's value: a data-dependent guard, or a fake tensor where Python needed
    a number (a dict key or module name made from it: ``KeyError: 'expert_FakeTensor(...)'``)."""
    lowered = message.lower()
    return ("data-dependent" in lowered or "data dependent" in lowered or "guardondatadependent" in lowered
            or "faketensor(" in lowered)


def _hint(message: str, error: BaseException | None = None) -> str:
    lowered = message.lower()
    if _is_data_dependent(message):
        return (f"the model has data-dependent control flow at {_user_location(message, error)} (a shape or a "
                f"branch computed from a tensor's values); make the branch depend on shapes or constants only, "
                f"move it out of forward, or trace with specialise_values=True to take those values from the "
                f"example input")
    if "cache" in lowered or "past_key_values" in lowered:
        return "pass use_cache=False (example_kwargs={'use_cache': False}) so no KV-cache object is traced"
    if "meta" in lowered and "device" in lowered:
        return "put the whole model and the example inputs on one device (all meta, or all real)"
    return "check that the example inputs are the ones forward() expects and that the model runs on them"


def export_program(model: torch.nn.Module, args: tuple, kwargs: dict) -> torch.export.ExportedProgram:
    """``torch.export.export(strict=False)``, its failures re-raised as FrontendError with a hint
    (:class:`~graphpress.errors.DataDependentError` where the model's shapes or branches depend on values)."""
    # torch prints the partial graph of a failed export to stderr; a data-dependent failure is retried with
    # values (trace's specialise_values), so its dump is kept on the error and printed only if none follows.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            program = torch.export.export(model, args, kwargs=kwargs, strict=False)
    except Exception as exc:  # torch raises many unrelated types here; all mean "could not trace"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        data_dependent = _is_data_dependent(str(exc))
        if not data_dependent:
            sys.stderr.write(printed.getvalue())
        error = (DataDependentError if data_dependent else FrontendError)(
            f"torch.export could not trace {type(model).__name__}: {first}\nhint: {_hint(str(exc), exc)}")
        error.torch_output = printed.getvalue()
        raise error from exc
    sys.stderr.write(printed.getvalue())
    return program


def _without_checks(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``ep`` without the nodes that only feed run-time checks (``checks_only``): the lowering skips them anyway,
    and the size they read with ``item()`` is an unbacked symbol that torch 2.11's decomposition cannot carry
    (Hugging Face's image-token count checks in LLaVA, PaliGemma, Gemma 3, Florence-2)."""
    nodes = list(ep.graph.nodes)
    skipped = checks_only(nodes)
    for node in reversed(nodes):
        if node in skipped:
            ep.graph.erase_node(node)
    if skipped:
        ep.graph_module.recompile()
    return ep


def _decomposed(ep: torch.export.ExportedProgram, name: str) -> torch.export.ExportedProgram:
    try:
        return _without_checks(ep).run_decompositions(decomposition_table())
    except Exception as exc:  # torch raises many unrelated types here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FrontendError(f"torch could not decompose the exported {name} to core aten: {first}") from exc


def trace(
    model: torch.nn.Module,
    example_inputs: tuple | dict | torch.Tensor,
    *,
    example_kwargs: dict | None = None,
    inplace: bool = False,
    decompose: bool | None = None,
    specialise_values: bool | None = None,
) -> Graph:
    """Trace ``model`` into a torch-origin :class:`~graphpress.ir.Graph`.

    ``example_inputs`` is a tuple of positional arguments, a dict of keyword arguments (Hugging Face
    style) or one tensor; ``example_kwargs`` adds keyword arguments. Shapes are static: the graph is
    specialised to the example shapes. ``graph.module`` is the (copied) model the parameters are bound to.
    ``decompose``: None lowers the exported graph directly when every op has a rule and decomposes
    otherwise; True always decomposes to core aten first; False never does.
    ``specialise_values``: a model that reads tensor values into Python (``.item()``, ``.tolist()``, ``if
    x.any():``) or calls ops whose output size depends on the data (``nonzero``) cannot be traced from shapes
    alone. None retries such a model with those values taken from the example input and warns where
    (:mod:`.torch_example_values`; the reads are in ``graph.metadata["specialised_values"]``); True does so
    from the start, False raises :class:`~graphpress.errors.DataDependentError` instead.
    """
    started = time.perf_counter()
    working = model if inplace else copy.deepcopy(model)
    working.eval()
    args, kwargs = _split_inputs(example_inputs, example_kwargs)
    if _is_hf_model(working) and _uses_cache(working):
        kwargs.setdefault("use_cache", False)
    if _is_meta_model(working):
        args, kwargs = _to_meta(args), _to_meta(kwargs)
    specialise = bool(specialise_values)
    try:
        try:
            graph, decomposed, substituted, exported = _export_and_lower(working, args, kwargs, decompose, specialise)
        except DataDependentError as error:
            if specialise_values is not None or _is_meta_model(working):  # a meta model has no values to take
                sys.stderr.write(getattr(error, "torch_output", ""))
                raise
            specialise = True
            graph, decomposed, substituted, exported = _export_and_lower(working, args, kwargs, decompose, specialise)
    except StateMutationError:
        # Some models finish initialising in their first call (RWKV rescales its weights once, then sets a
        # flag); after one forward their trace is pure. State written in every call still fails, by name.
        with torch.no_grad():
            working(*args, **kwargs)
        graph, decomposed, substituted, exported = _export_and_lower(working, args, kwargs, decompose, specialise)
        graph.metadata["warmed_up"] = True
    if specialise_values is None and graph.metadata.get("specialised_values"):
        _warn_specialised(type(working).__name__, graph.metadata["specialised_values"])
    graph.metadata["decomposed"] = decomposed
    graph.metadata["traced_substitutions"] = substituted
    graph.metadata["trace_seconds"] = {"export": exported - started, "lower": time.perf_counter() - exported}
    return graph


def _warn_specialised(name: str, reads: list[ValueRead]) -> None:
    warnings.warn(
        f"{name} reads {len(reads)} tensor value(s) into Python or sizes a tensor by its data; the graph takes "
        f"them from the example input, so its shapes and branches are those of inputs like it (pruning edits "
        f"your own module and is not affected; an ONNX export computes them as for the example). Where:\n"
        f"{describe_reads(reads)}\nPass specialise_values=False to trace() to refuse such models instead.",
        stacklevel=3)


def _export_and_lower(working: torch.nn.Module, args: tuple, kwargs: dict, decompose: bool | None,
                      specialise: bool = False) -> tuple[Graph, bool, list[str], float]:
    """Export and lower once: the graph, whether it was decomposed, the substituted forwards and the time
    the export finished (see :func:`trace` for ``decompose``; ``specialise`` takes data-dependent values from
    the example input, in the decomposition's re-trace too)."""
    with contextlib.ExitStack() as stack:
        reads = stack.enter_context(example_values_as_constants()) if specialise else []
        with torch.no_grad(), substituted_forwards(working) as substituted, unchanged_conversions_skipped():
            ep = export_program(working, args, kwargs)
        reads = list(reads)  # the export's own; a decomposition re-traces and reads them again
        exported = time.perf_counter()
        graph, decomposed = _lower(ep, working, decompose)
    graph.metadata["specialised_values"] = reads
    return graph, decomposed, substituted, exported


def _lower(ep: torch.export.ExportedProgram, working: torch.nn.Module, decompose: bool | None) -> tuple[Graph, bool]:
    name = type(working).__name__
    side = keep_side_branches(ep)  # branches forward runs but no output reads, before a decomposition drops them
    if not decompose:
        try:
            # Weights-only values with an op without a rule are evaluated only on the last attempt: the
            # decomposition may give that op a form graphpress lowers (weight_norm's ``_weight_norm``).
            return lower_exported_program(ep, working, name=name, evaluate_weights=decompose is False,
                                          side_outputs=side), False
        except StateMutationError:
            raise
        except FrontendError:  # an op without a rule (or a pre-dispatch form a rule does not take)
            if decompose is False:
                raise
    return lower_exported_program(_decomposed(ep, name), working, name=name, side_outputs=side), True


def export_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    example_inputs: tuple | dict | torch.Tensor | None = None,
    *,
    example_kwargs: dict | None = None,
    opset: int | None = None,
    external_data: bool | None = None,
    int8_compute: bool = False,
) -> str:
    """Trace ``model`` and write it as an ONNX file, atomically; returns the absolute path.

    The graph goes through graphpress' own emitter (:func:`graphpress.backends.onnx.save_onnx`), so the
    file has the same op forms the ONNX frontend reads back (Linear as Gemm/MatMul, attention as a
    softmax chain); ``external_data`` keeps weights in ``<file>.data`` (default: only above 2 GiB);
    ``int8_compute`` lets onnxruntime run quantized linears with int8 activations (see ``to_onnx``).
    """
    from ..backends.onnx import save_onnx

    if example_inputs is None and not example_kwargs:
        raise FrontendError(
            f"export_onnx needs example inputs for {type(model).__name__}, e.g. example_inputs=(torch.randn(1, 3, 224, 224),)"
        )
    graph = trace(model, example_inputs if example_inputs is not None else (), example_kwargs=example_kwargs)
    return save_onnx(graph, path, opset=opset, external_data=external_data, int8_compute=int8_compute)
