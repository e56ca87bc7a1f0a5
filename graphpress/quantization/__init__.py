"""Weight quantization: RTN, HQQ, GPTQ, AWQ and SmoothQuant W8A8 into one packed format.

``quantize_model(model, bits=4, group=64, method="gptq", calibration=windows)`` replaces the model's
``nn.Linear`` layers by :class:`QuantizedLinear` (packed codes + float scales/zeros, see ``packing.py``);
``load_quantized(folder)`` reloads a quantized model saved with ``save_pretrained``.
"""

from graphpress.quantization.api import QuantizationReport, quantize_model
from graphpress.quantization.grid import QuantizedWeight, fake_quantize
from graphpress.quantization.module import QuantizedLinear
from graphpress.quantization.options import METHODS, QuantOptions
from graphpress.quantization.swap import load_quantized, quantization_config, select_linears

__all__ = [
    "METHODS",
    "QuantOptions",
    "QuantizationReport",
    "QuantizedLinear",
    "QuantizedWeight",
    "fake_quantize",
    "load_quantized",
    "quantization_config",
    "quantize_model",
    "select_linears",
]
