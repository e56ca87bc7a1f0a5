"""Kernel tests run Triton's CPU interpreter; it must be chosen before Triton compiles anything.

``GRAPHPRESS_TEST_CUDA=1`` leaves the interpreter off, for running ``test_kernels_cuda.py`` on a GPU (the
interpreter tests then skip themselves).
"""

import os

if os.environ.get("GRAPHPRESS_TEST_CUDA", "0") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")
