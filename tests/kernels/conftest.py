"""Kernel tests run Triton's CPU interpreter; it must be chosen before Triton compiles anything."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
