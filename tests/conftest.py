"""Test-wide settings: offline Hugging Face, one torch thread per xdist worker, deterministic seeds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Triton reads this when it is first imported, which may be in any test module: set it for the whole run
# so the kernel tests run in Triton's interpreter on machines without a GPU (GRAPHPRESS_TEST_CUDA=1 keeps it
# off, for tests/kernels/test_kernels_cuda.py on a GPU).
if os.environ.get("GRAPHPRESS_TEST_CUDA", "0") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
