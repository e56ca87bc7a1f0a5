"""``merge_models``: merge same-architecture checkpoints into one, streaming tensor by tensor.

The flow is: open every checkpoint lazily (headers only), validate them all against the base, then for
each parameter read it from every checkpoint, merge it with the chosen method and append it to the
output safetensors file, before moving to the next. Peak memory is therefore about one tensor per
checkpoint plus its float32 working copies, whatever the model size. The output folder (merged
safetensors, config and tokenizer files copied from the base, and a ``graphpress_merge.json`` record of
how it was made) appears atomically through :func:`graphpress.io.atomic_path`: it is built in a hidden
sibling folder and renamed into place, so a crash midway leaves no partial output and keeps an earlier one.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

import torch
from torch import nn

from graphpress.errors import OptionError
from graphpress.io import atomic_path
from graphpress.merging.checkpoints import INDEX_FILE, SINGLE_FILE, Checkpoint, open_checkpoint
from graphpress.merging.registry import MergeContext, MergeMethod, get_merge_method
from graphpress.merging.safetensors_io import SafetensorsStreamWriter, TensorInfo, plan_shards
from graphpress.merging.validation import check_mergeable
from graphpress.progress import progress as progress_bar

__all__ = ["merge_models", "ProgressCallback", "DEFAULT_MAX_SHARD_BYTES", "RECORD_FILE"]

ModelSource = Union[str, Path, nn.Module]
ProgressCallback = Callable[[int, int, str], None]  # (tensors done, tensors in all, name just merged)

DEFAULT_MAX_SHARD_BYTES = 5 * 2**30
RECORD_FILE = "graphpress_merge.json"
# Files of the base folder that are weights (replaced by the merge), not side files to copy.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack")


def merge_models(
    base: ModelSource,
    models: Sequence[ModelSource],
    *,
    method: str = "linear",
    weights: Sequence[float] | None = None,
    density: float | None = None,
    lambda_: float = 1.0,
    seed: int = 0,
    output: str | Path | None = None,
    progress: ProgressCallback | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path | nn.Module | dict[str, torch.Tensor]:
    """Merge ``models`` (fine-tunes of ``base``) with ``method``; see :mod:`graphpress.merging.methods`.

    ``base`` and ``models`` are Hugging Face model folders (safetensors, possibly sharded) or modules.
    ``weights`` default to 1 per model; ``density`` is the kept fraction for ties/dare_*; ``lambda_``
    scales the merged delta; ``seed`` makes DARE's random drops reproducible. ``progress``, if given, is
    called after each tensor; a progress bar also shows on a terminal (see :mod:`graphpress.progress`).

    Returns the output folder when ``output`` is given (written atomically), else a merged deep copy
    of ``base`` when it is a module, else the merged state dict (which then lives in memory).
    Raises :class:`~graphpress.errors.OptionError` for bad options and a
    :class:`~graphpress.merging.errors.MergeError` subclass for incompatible checkpoints, before writing.
    """
    merge_method = get_merge_method(method)
    models = list(models)
    weight_tensor = _weight_tensor(weights, len(models))
    merge_method.check_options(weight_tensor, density)
    base_checkpoint = open_checkpoint(base, "base")
    model_checkpoints = [open_checkpoint(model, f"models[{index}]") for index, model in enumerate(models)]
    check_mergeable(base_checkpoint, model_checkpoints)

    total = len(base_checkpoint.infos)
    with progress_bar(total, "merging") as bar:
        done = 0

        def merged_tensors(infos: Sequence[TensorInfo]) -> Iterator[tuple[TensorInfo, torch.Tensor]]:
            nonlocal done
            for info in infos:
                tensor = merge_method.apply(
                    base_checkpoint.read(info.name),
                    [checkpoint.read(info.name) for checkpoint in model_checkpoints],
                    weight_tensor,
                    MergeContext(info.name, density, seed),
                    lambda_,
                )
                done += 1
                bar.update(1)
                if progress is not None:
                    progress(done, total, info.name)
                yield info, tensor

        try:
            if output is None:
                state = {info.name: tensor for info, tensor in merged_tensors(list(base_checkpoint.infos.values()))}
                if isinstance(base, nn.Module):
                    merged_module = copy.deepcopy(base)
                    merged_module.load_state_dict(state)
                    return merged_module
                return state
            _refuse_overwriting_inputs(Path(output), [base_checkpoint, *model_checkpoints])
            record = {
                "method": merge_method.name,
                "weights": weight_tensor.tolist(),
                "density": density,
                "lambda": lambda_,
                "seed": seed,
                "base": base_checkpoint.label,
                "models": [checkpoint.label for checkpoint in model_checkpoints],
            }
            with atomic_path(output, directory=True) as staging_name:
                staging = Path(staging_name)
                _copy_side_files(base_checkpoint, staging)
                _write_weights(
                    staging, list(base_checkpoint.infos.values()), merged_tensors, merge_method, max_shard_bytes
                )
                (staging / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            return Path(output)
        finally:
            for checkpoint in (base_checkpoint, *model_checkpoints):
                checkpoint.close()


def _weight_tensor(weights: Sequence[float] | None, model_count: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(model_count)
    if len(weights) != model_count:
        raise OptionError(f"{len(weights)} weights given for {model_count} models")
    tensor = torch.tensor([float(weight) for weight in weights])
    if not torch.isfinite(tensor).all():
        raise OptionError(f"weights must be finite numbers, got {list(weights)}")
    return tensor


def _refuse_overwriting_inputs(output: Path, checkpoints: Sequence[Checkpoint]) -> None:
    # Replacing an input while it is being read would merge against a moving target.
    target = output.resolve()
    for checkpoint in checkpoints:
        if checkpoint.folder is not None and checkpoint.folder.resolve() == target:
            raise OptionError(f"output {output} is one of the input checkpoints; choose another folder")


def _copy_side_files(base: Checkpoint, staging: Path) -> None:
    """Config, generation config and tokenizer files come from the base; modules contribute their config."""
    if base.folder is not None:
        for path in sorted(base.folder.iterdir()):
            if (
                path.is_file()
                and not path.name.endswith(_WEIGHT_SUFFIXES)
                and path.name not in (INDEX_FILE, RECORD_FILE)
            ):
                shutil.copy2(path, staging / path.name)
    elif base.config is not None:
        (staging / "config.json").write_text(json.dumps(base.config, indent=2, default=str) + "\n", encoding="utf-8")


def _write_weights(
    staging: Path,
    infos: list[TensorInfo],
    merged_tensors: Callable[[Sequence[TensorInfo]], Iterator[tuple[TensorInfo, torch.Tensor]]],
    merge_method: MergeMethod,
    max_shard_bytes: int,
) -> None:
    shards = plan_shards(infos, max_shard_bytes)
    names = (
        [SINGLE_FILE]
        if len(shards) == 1
        else [f"model-{index:05d}-of-{len(shards):05d}.safetensors" for index in range(1, len(shards) + 1)]
    )
    for shard_name, shard in zip(names, shards):
        writer = SafetensorsStreamWriter(staging / shard_name, shard, {"merge_method": merge_method.name})
        try:
            for info, tensor in merged_tensors(shard):
                writer.write(info.name, tensor)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": sum(info.nbytes for info in infos)},
            "weight_map": {info.name: name for name, shard in zip(names, shards) for info in shard},
        }
        (staging / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
