"""The three-line API: ``graphpress.optimize(model, "dce,fold-bn", example_inputs=(x,))``.

``optimize`` accepts what the user has (an ``nn.Module``, an ONNX path, an ``onnx.ModelProto``) and returns
the same kind of thing: the user's own class (a copy, or the original edited in place with
``inplace=True``), or an ``onnx.ModelProto``. Nothing of the user's is touched when a pass fails.
"""

from __future__ import annotations

import gc
import os
import traceback
from typing import Any, Sequence

import torch

from .errors import GraphpressError
from .frontends.input_sizes import input_shapes
from .ir import Graph
from .passes import Pass, PassContext, PassManager, PipelineReport, resolve_passes
from .passes.snapshot import SNAPSHOT_PLACES, Snapshot, snapshot_on_host, take_snapshot

__all__ = ["optimize", "optimize_graph", "default_example_inputs", "random_inputs_for"]


def default_example_inputs(model: torch.nn.Module, seq_len: int = 16) -> tuple | None:
    """Token ids for a Hugging Face language/encoder model, from its config; None when not applicable."""
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    if vocab:
        generator = torch.Generator().manual_seed(0)
        return (torch.randint(0, vocab, (1, seq_len), generator=generator),)
    image_size = getattr(config, "image_size", None)
    channels = getattr(config, "num_channels", 3)
    if image_size:
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(1, channels, image_size, image_size, generator=generator),)
    return None


def random_inputs_for(graph: Graph, seed: int = 0, free_size: int = 1) -> tuple:
    """Random inputs matching the graph's inputs, for numeric checks: symbolic dims at the size a weight they
    meet fixes, expressions of symbols evaluated, other symbols ``free_size``
    (:func:`graphpress.frontends.input_sizes.input_shapes`)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for value, shape in zip(graph.inputs, input_shapes(graph, free_size)):
        dtype = value.dtype or torch.float32
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            out.append(torch.ones(shape, dtype=torch.bool))
        else:
            out.append(torch.randint(0, 2, shape, generator=generator).to(dtype))
    return tuple(out)


def optimize_graph(graph: Graph, passes: str | Pass | Sequence[str | Pass], ctx: PassContext) -> PipelineReport:
    """Run a pipeline on an IR graph in place (rolled back pass by pass on failure)."""
    return PassManager(resolve_passes(passes)).run(graph, ctx)


def optimize(
    model: Any,
    passes: str | Pass | Sequence[str | Pass],
    *,
    example_inputs: tuple | None = None,
    example_kwargs: dict | None = None,
    calibration: Any = None,
    tokenizer: Any = None,
    inplace: bool = False,
    check: bool = True,
    repro_dir: str | os.PathLike | None = None,
    return_report: bool = False,
    rollback: bool = True,
    snapshots: str = "auto",
) -> Any:
    """Compress ``model`` with ``passes`` and return the same kind of model (plus the report if asked).

    ``passes`` is a pipeline string such as ``"dce,fold-bn,prune-channels{ratio=0.3}"``, a pass object, or a
    list of either. ``example_inputs`` are used to trace a torch model and to check outputs after each
    pass (tensors are moved to the model's device); Hugging Face models get token ids by default.
    ``calibration`` feeds data-driven passes.

    Memory: a copy of the model is compressed, with a snapshot before each pass so that a failing pass is
    rolled back. ``snapshots`` says where those live: ``"device"`` (beside the model), ``"host"`` (CPU
    memory), or ``"auto"`` (host memory when a copy on the model's GPU would take more than half of its free
    memory). ``inplace=True`` puts the result into your object, all or nothing: after a failure it is exactly
    as before. With host snapshots that needs no second copy on the device: your object itself is compressed,
    with a copy of it in host memory to restore from (one model on the GPU, up to two in host memory).
    ``rollback=False`` keeps no snapshots; with ``inplace=True`` as well your object is compressed with no
    copy anywhere (unless a pass needs the original, as ``distill`` does), and a failing pass leaves it
    half-edited.
    """
    pass_list = resolve_passes(passes)  # validate the whole pipeline before any work
    if snapshots not in SNAPSHOT_PLACES:
        raise GraphpressError(f"snapshots must be one of {', '.join(SNAPSHOT_PLACES)}, not {snapshots!r}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    elif isinstance(example_inputs, dict):  # keyword inputs, e.g. {"input_ids": ..., "attention_mask": ...}
        example_kwargs = {**example_inputs, **(example_kwargs or {})}
        example_inputs = ()
    if isinstance(model, torch.nn.Module):
        result, report = _optimize_module(model, pass_list, example_inputs, example_kwargs, calibration,
                                          tokenizer, inplace, check, repro_dir, rollback, snapshots)
    else:
        result, report = _optimize_onnx(model, pass_list, example_inputs, calibration, tokenizer, check,
                                        repro_dir, rollback)
    return (result, report) if return_report else result


def _context(example_inputs, example_kwargs, calibration, tokenizer, check, repro_dir, rollback=True,
             snapshots="auto") -> PassContext:
    return PassContext(example_inputs=example_inputs, example_kwargs=example_kwargs, calibration=calibration,
                       tokenizer=tokenizer, check=check, repro_dir=os.fspath(repro_dir) if repro_dir else None,
                       rollback=rollback, snapshots=snapshots)


def _on_model_device(model: torch.nn.Module, value: Any) -> Any:
    """Example inputs on the device of the model's weights (all on one real device), else as given."""
    from .calibration.blocks import to_device

    devices = {t.device for t in list(model.parameters()) + list(model.buffers())}
    if len(devices) != 1 or next(iter(devices)).type == "meta":
        return value
    return to_device(value, next(iter(devices)))


def _take_state(model: torch.nn.Module, source: torch.nn.Module) -> None:
    """Make the user's ``model`` object hold ``source``'s state (``inplace=True``: the compressed result)."""
    if source is not model:
        model.__dict__.clear()
        model.__dict__.update(source.__dict__)


def _restore_from_host(model: torch.nn.Module, original: Snapshot, error: BaseException) -> str:
    """Put the state ``original`` holds back into the user's ``model`` after a failed in-place run; the
    sentence to add to the error.  The half-edited tensors are released first (the traceback's frames hold
    the graph), so the device never needs two copies; if the copy back to the device fails, the model keeps
    the host copy, intact, on the CPU."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:  # the cause's frames (the pass's own) hold the graph too
        seen.add(id(link))
        traceback.clear_frames(link.__traceback__)
        link = link.__cause__ or link.__context__
    model.__dict__.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        _take_state(model, original.materialize())
        return "your model was restored to its state before optimize() from its copy in host memory"
    except Exception as copy_back:  # noqa: BLE001 - the user's model must not be left empty
        _take_state(model, original.copy)
        return (f"your model was restored from its copy in host memory but left on the CPU: moving it back "
                f"failed ({type(copy_back).__name__}: {copy_back})")


def _optimize_module(model, pass_list, example_inputs, example_kwargs, calibration, tokenizer, inplace, check,
                     repro_dir, rollback=True, snapshots="auto"):
    from .backends.torch_module import finalize_module
    from .frontends.torch_export import trace

    if not example_inputs and not example_kwargs:
        example_inputs = default_example_inputs(model)
        if example_inputs is None:
            raise GraphpressError(
                f"optimize() needs example_inputs for a {type(model).__name__}: pass a tuple of tensors shaped "
                "like real inputs, e.g. example_inputs=(torch.randn(1, 3, 224, 224),)"
            )
    example_inputs = _on_model_device(model, tuple(example_inputs or ()))
    example_kwargs = _on_model_device(model, example_kwargs)
    # No copy only when asked for twice (inplace, no rollback): otherwise a failure must leave the caller's
    # object untouched. Passes that learn from the original (distillation) read it, so they always get a copy.
    # With rollback, in place is safe only when a copy of the original waits in host memory.
    needs_reference = any(p.needs_reference for p in pass_list)
    original = None
    if inplace and rollback and not needs_reference and snapshot_on_host(model, snapshots):
        original = take_snapshot(model, on_host=True)
    in_place = inplace and (not rollback or original is not None) and not needs_reference
    try:
        graph = trace(model, example_inputs, example_kwargs=example_kwargs, inplace=in_place)
        ctx = _context(example_inputs, example_kwargs, calibration, tokenizer, check, repro_dir, rollback,
                       snapshots)
        ctx.extras["reference_module"] = None if in_place else model
        ctx.restore_on_failure = original is None  # a per-pass restore would put a second copy on the device
        report = PassManager(pass_list).run(graph, ctx)
        result = finalize_module(graph)
    except BaseException as error:
        if original is None:
            raise
        graph = ctx = None
        note = _restore_from_host(model, original, error)
        if isinstance(error, GraphpressError):
            raise type(error)(f"{error}\n{note}") from error
        raise
    if inplace:
        _take_state(model, result)
        result = model
    return result, report


#: Sizes tried, in order, for the input dims nothing in the graph fixes (sequence lengths, image sides).
_FREE_SIZES = (1, 2, 8, 16, 32, 64, 128, 224, 256, 384, 512)


def _runnable_inputs(graph: Graph) -> tuple:
    """Made-up inputs the model runs on: :func:`random_inputs_for` with the free symbolic dims at the first
    size of :data:`_FREE_SIZES` that runs (a ViT's image side must match its position table, say)."""
    from .backends.evaluate import evaluate

    symbolic = any(isinstance(d, str) for v in graph.inputs for d in (v.shape or ()))
    first_error = None
    for size in _FREE_SIZES if symbolic else _FREE_SIZES[:1]:  # static shapes: nothing else to try
        inputs = random_inputs_for(graph, free_size=size)
        try:
            evaluate(graph, inputs)
            return inputs
        except Exception as error:  # noqa: BLE001 - any failure means: try the next size
            first_error = first_error or error
    message = str(first_error).strip().splitlines()[0] if str(first_error).strip() else type(first_error).__name__
    raise GraphpressError(
        "the model does not run on inputs made from its declared input shapes (symbolic dims tried at "
        f"{', '.join(map(str, _FREE_SIZES))}): {message}. Give example inputs (optimize(..., example_inputs=...)) "
        "or skip the numeric checks (check=False, the CLI's --no-check)")


def _optimize_onnx(model, pass_list, example_inputs, calibration, tokenizer, check, repro_dir, rollback=True):
    import onnx

    from .backends.onnx import to_onnx
    from .frontends.onnx_import import load_onnx

    if not isinstance(model, (str, os.PathLike, onnx.ModelProto)):
        raise GraphpressError(
            f"optimize() takes an nn.Module, an ONNX file path or an onnx.ModelProto, not {type(model).__name__}"
        )
    graph = load_onnx(model)
    if example_inputs is None:
        example_inputs = _runnable_inputs(graph) if check else random_inputs_for(graph)
    ctx = _context(example_inputs, None, calibration, tokenizer, check, repro_dir, rollback)
    report = PassManager(pass_list).run(graph, ctx)
    return to_onnx(graph), report
