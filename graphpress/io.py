"""Loading models the user names, and writing results atomically.

A model spec is an ONNX file, a Hugging Face model folder, or an embedded default name (``smollm2``,
``minilm``; see :mod:`graphpress.models`). Outputs go to a temporary sibling first and are renamed into
place, so an interrupted run never leaves a half-written file and an older output survives a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import GraphpressError

__all__ = ["LoadedModel", "load_model", "atomic_path", "save_result"]

EMBEDDED = ("smollm2", "minilm")


@dataclass
class LoadedModel:
    kind: str  # "torch" or "onnx"
    model: Any
    tokenizer: Any = None
    name: str = ""


def load_model(spec: str) -> LoadedModel:
    """Resolve a CLI model spec into a torch module (with tokenizer) or an ONNX path."""
    path = Path(spec)
    if spec in EMBEDDED and not path.exists():
        from .models import load_default

        model, tokenizer = load_default(spec)
        return LoadedModel("torch", model, tokenizer, spec)
    if not path.exists():
        raise GraphpressError(f"no such model: {spec!r} (give an ONNX file, a Hugging Face model folder, "
                              f"or one of the embedded names: {', '.join(EMBEDDED)})")
    if path.is_file():
        if path.suffix.lower() == ".onnx":
            return LoadedModel("onnx", str(path), None, path.stem)
        if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt"):
            raise GraphpressError(f"{spec} is a torch checkpoint: it holds weights but no architecture. Load "
                                  "the model in Python (torch.load(..., weights_only=True) into your class) and "
                                  "call graphpress.optimize(model, ...), or export it to ONNX first.")
        raise GraphpressError(f"{spec}: unknown model file type {path.suffix!r}; expected .onnx")
    if (path / "config.json").exists():
        return _load_hf_folder(path)
    onnx_files = sorted(path.glob("*.onnx"))
    if len(onnx_files) == 1:
        return LoadedModel("onnx", str(onnx_files[0]), None, onnx_files[0].stem)
    raise GraphpressError(f"{spec} is a folder with neither config.json (Hugging Face) nor a single .onnx file")


def _load_hf_folder(path: Path) -> LoadedModel:
    import json

    import transformers

    config = json.loads((path / "config.json").read_text())
    if config.get("graphpress_quantization") or (path / "graphpress_quantization.json").exists():
        from .quantization import load_quantized  # type: ignore[attr-defined]

        model = load_quantized(path)
    else:
        archs = config.get("architectures") or []
        auto = transformers.AutoModelForCausalLM if any(a.endswith("ForCausalLM") for a in archs) \
            else transformers.AutoModel
        try:
            model = auto.from_pretrained(path)
        except Exception as exc:  # noqa: BLE001 - turned into one clear message
            raise GraphpressError(f"could not load the Hugging Face model in {path}: {exc}") from exc
    tokenizer = None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001 - a model folder without a tokenizer is fine
        pass
    model.eval()
    return LoadedModel("torch", model, tokenizer, path.name)


@contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False) -> Iterator[str]:
    """Yield a temporary path next to ``target``; on success rename it onto ``target``, else delete it."""
    target = os.path.abspath(os.fspath(target))
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(target)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        os.close(fd)
    # mkdtemp/mkstemp make private 0700/0600 entries; the result should get the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)
    try:
        yield tmp
        if directory and os.path.isdir(target):
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def _without_gguf_marker(model: Any) -> Iterator[None]:
    """Hide the GGUF origin of a Hugging Face model while it is saved.

    transformers dequantizes GGUF weights to float at load time but keeps a GGUF "quantizer" on the model,
    and then refuses ``save_pretrained`` as if the weights were still quantized. The weights graphpress
    hands back are plain tensors (or its own packed buffers), so the marker is dropped for the save and
    put back afterwards.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if str(getattr(method, "value", method)).lower() != "gguf":
        yield
        return
    config = model.config
    config_value = config.__dict__.get("quantization_config")
    had_config = config_value is quantizer.quantization_config
    model.hf_quantizer = None
    if had_config:
        del config.__dict__["quantization_config"]
    try:
        yield
    finally:
        model.hf_quantizer = quantizer
        if had_config:
            config.__dict__["quantization_config"] = config_value


def save_result(result: Any, output: str, *, tokenizer: Any = None) -> str:
    """Write an optimize() result: ONNX -> file; a Hugging Face model -> save_pretrained folder."""
    import onnx

    if isinstance(result, onnx.ModelProto):
        with atomic_path(output) as tmp:
            onnx.save_model(result, tmp)
        return output
    if hasattr(result, "save_pretrained"):
        with atomic_path(output, directory=True) as tmp, _without_gguf_marker(result):
            result.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        return output
    import torch

    with atomic_path(output) as tmp:
        torch.save(result.state_dict(), tmp)
    return output
