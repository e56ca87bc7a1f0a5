"""graphpress: compress neural networks the way a compiler optimizes programs.

    import graphpress
    small = graphpress.optimize(model, "fold-bn,prune-channels{ratio=0.3}", example_inputs=(x,))

A model is traced into an IR (torch.export or ONNX), analyses find coupled channels and heads, a pass
manager runs pruning/merging/quantization/lowering passes, and a backend hands back the user's own
PyTorch model, an ONNX model, or a Triton-backed module.
"""

from __future__ import annotations

from typing import Any

from .api import optimize
from .errors import GraphpressError
from .passes import Pass, PassResult, register_pass
from .passes import list_passes as _list_pass_classes

__version__ = "0.1.0"

__all__ = [
    "optimize",
    "trace",
    "load_onnx",
    "load_pruned",
    "export_onnx",
    "merge_models",
    "list_passes",
    "register_pass",
    "Pass",
    "PassResult",
    "GraphpressError",
    "__version__",
]


def list_passes() -> list[str]:
    """Names of every registered pass (built-in and user-registered)."""
    return [cls.name for cls in _list_pass_classes()]


def trace(model: Any, example_inputs: Any, **kwargs: Any):
    """Trace an ``nn.Module`` into graphpress IR with torch.export (see graphpress.frontends.torch_export)."""
    from .frontends.torch_export import trace as _trace

    return _trace(model, example_inputs, **kwargs)


def load_onnx(path_or_model: Any):
    """Load an ONNX file or ModelProto into graphpress IR (see graphpress.frontends.onnx_import)."""
    from .frontends.onnx_import import load_onnx as _load

    return _load(path_or_model)


def load_pruned(folder: Any, model_class: Any = None, **kwargs: Any):
    """Reload a Hugging Face model that graphpress pruned and ``save_pretrained`` wrote, whatever its layer widths
    (see graphpress.backends.hf_reload.load_pruned)."""
    from .backends.hf_reload import load_pruned as _load

    return _load(folder, model_class, **kwargs)


def merge_models(base: Any, models: Any, **kwargs: Any):
    """Merge same-architecture checkpoints (see graphpress.merging.merge_models)."""
    from .merging import merge_models as _merge

    return _merge(base, models, **kwargs)


def export_onnx(model: Any, path: Any, example_inputs: Any = None, **kwargs: Any):
    """Write an ``nn.Module`` as an ONNX file through graphpress IR."""
    from .frontends.torch_export import export_onnx as _export

    return _export(model, path, example_inputs=example_inputs, **kwargs)
