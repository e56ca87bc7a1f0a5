"""Calibration: feed data through a model block by block and collect what compression methods need."""

from graphpress.calibration.blocks import BlockCall, capture_block_inputs, find_blocks, run_block
from graphpress.calibration.inputs import CalibrationData, calibration_batches
from graphpress.calibration.runner import BlockContext, run_blockwise
from graphpress.calibration.statistics import LinearInputRecorder, LinearInputStats, linear_modules

__all__ = [
    "BlockCall",
    "BlockContext",
    "CalibrationData",
    "LinearInputRecorder",
    "LinearInputStats",
    "calibration_batches",
    "capture_block_inputs",
    "find_blocks",
    "linear_modules",
    "run_block",
    "run_blockwise",
]
