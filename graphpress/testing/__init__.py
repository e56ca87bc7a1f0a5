"""Small models for tests and examples: tiny Hugging Face configs with random weights, and CNNs that
exercise every structural pattern the coupling analysis must handle. Nothing here downloads anything."""

from .cnn_blocks import TinyMobileNetV2, TinyResNet, TinySegNet
from .compare import max_relative_error, run_onnx
from .zoo import ZooCase, meta_llama, randomize_batchnorm, tiny_case, tiny_case_names

__all__ = ["ZooCase", "tiny_case", "tiny_case_names", "meta_llama", "randomize_batchnorm", "TinyResNet", "TinyMobileNetV2",
           "TinySegNet", "max_relative_error", "run_onnx"]
