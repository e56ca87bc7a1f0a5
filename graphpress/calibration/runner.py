"""Block-by-block calibration: statistics of every linear, with each block seeing its compressed predecessors.

:func:`run_blockwise` captures the inputs of block 0 once, then for each block ``i`` in order:

1. runs block ``i`` on the current hidden states while hooks accumulate the input statistics of its linears;
2. calls ``callback(context)``, which may edit block ``i`` in place (quantize, prune, sparsify) using those
   statistics and, through ``context.run()``, the block's outputs on the calibration tokens;
3. recomputes block ``i``'s outputs with the edited block; they become block ``i+1``'s inputs.

So GPTQ, AWQ, SparseGPT and Wanda see the activations produced by the already-compressed blocks before
them, and the only activations alive are one block's inputs and outputs: peak memory is about one block
plus two copies of the calibration hidden states, whatever the number of layers. With ``device`` set,
each block is moved there for its turn and back afterwards, so a model larger than the accelerator works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from graphpress.calibration.blocks import (
    BlockCall,
    capture_block_calls,
    capture_block_inputs,
    check_replayable,
    find_blocks,
    run_block,
    to_device,
)
from graphpress.calibration.inputs import CalibrationData, calibration_batches
from graphpress.calibration.statistics import LinearInputRecorder, LinearInputStats, linear_modules

__all__ = ["BlockContext", "run_blockwise"]


@dataclass
class BlockContext:
    """What a callback sees for one block: the block, its linears' input statistics, and a way to run it."""

    index: int
    name: str
    block: nn.Module
    stats: dict[str, LinearInputStats]
    inputs: list[torch.Tensor]
    calls: list[BlockCall]

    @property
    def linears(self) -> dict[str, nn.Linear]:
        """The block's linear layers by fully qualified name (the keys of ``stats``)."""
        return linear_modules(self.block, self.name)

    @torch.no_grad()
    def run(self, block: Optional[nn.Module] = None) -> list[torch.Tensor]:
        """Outputs of ``block`` (default: this block as it is now) on this block's calibration inputs."""
        block = self.block if block is None else block
        return [run_block(block, hidden, call) for hidden, call in zip(self.inputs, self.calls)]


@torch.no_grad()
def run_blockwise(
    model: nn.Module,
    calibration: CalibrationData,
    *,
    tokenizer: Optional[Any] = None,
    callback: Optional[Callable[[BlockContext], None]] = None,
    with_gram: bool = False,
    keep_stats: bool = True,
    batch_size: int = 4,
    blocks: Optional[str] = None,
    device: Optional[torch.device | str] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> dict[str, LinearInputStats]:
    """Walk the model's blocks in order on calibration data; return the linears' input statistics.

    ``calibration`` is a token tensor, a list of strings (with ``tokenizer``) or an iterable of input dicts.
    ``with_gram`` also accumulates ``X^T X`` per linear (GPTQ/SparseGPT). With ``keep_stats=False`` each
    block's statistics are dropped after its callback (Gram matrices of a big model add up) and ``{}`` is
    returned. ``progress(done, total)`` is called after each block.
    """
    was_training = model.training
    model.eval()
    try:
        batches = calibration_batches(calibration, tokenizer=tokenizer, batch_size=batch_size)
        prefix, block_list = find_blocks(model, blocks)
        if check_replayable(model, prefix, block_list, batches[0]):  # before any callback edits a block
            hidden_states, calls_by_block = capture_block_calls(model, block_list, batches)
        else:
            hidden_states, calls = capture_block_inputs(model, block_list[0], batches)
            calls_by_block = [calls] * len(block_list)
        if device is not None:
            hidden_states = [h.to(device) for h in hidden_states]
            moved: dict[int, list[BlockCall]] = {}  # blocks sharing block 0's calls share one moved copy
            calls_by_block = [moved.setdefault(id(calls), [BlockCall(to_device(c.args, device),
                                                                     to_device(c.kwargs, device)) for c in calls])
                              for calls in calls_by_block]
        collected: dict[str, LinearInputStats] = {}
        for index, block in enumerate(block_list):
            calls = calls_by_block[index]
            home = next(block.parameters()).device
            if device is not None:
                block.to(device)
            name = f"{prefix}.{index}"
            recorder = LinearInputRecorder(linear_modules(block, name), with_gram=with_gram)
            outputs = []
            with recorder:
                for hidden, call in zip(hidden_states, calls):
                    recorder.new_batch()
                    outputs.append(run_block(block, hidden, call))
            if callback is not None:
                callback(BlockContext(index, name, block, recorder.stats, hidden_states, calls))
                outputs = [run_block(block, hidden, call) for hidden, call in zip(hidden_states, calls)]
            if device is not None:
                block.to(home)
            if keep_stats:
                collected.update(recorder.stats)
            hidden_states = outputs
            if progress is not None:
                progress(index + 1, len(block_list))
        return collected
    finally:
        model.train(was_training)
