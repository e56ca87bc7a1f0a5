"""Atomic output: a `graphpress optimize ... -o OUT` killed with SIGKILL mid-write leaves OUT as it was.

The subprocess runs the real CLI; only ``onnx.save_model`` is wrapped (in the child, by a launcher
script written here, so no test hook lives in the library) to write half of the bytes, announce it,
and stall, so that the kill lands during the write. SIGKILL gives the process no chance to clean up,
which is the point: the output must never have been the file being written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import graphpress

LAUNCHER = """
import sys, time, onnx
from pathlib import Path

marker = Path(sys.argv[1])

def stalling_save(proto, path, *args, **kwargs):
    data = proto.SerializeToString()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        marker.write_text(str(path))
        time.sleep(120)  # killed here
        handle.write(data[len(data) // 2:])

onnx.save_model = stalling_save
from graphpress.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigkill_during_write_leaves_previous_output_intact(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    source = tmp_path / "model.onnx"
    graphpress.export_onnx(model, source, example_inputs=(torch.randn(2, 16),))
    output = tmp_path / "out" / "small.onnx"
    output.parent.mkdir()
    previous = b"the previous run's output"
    output.write_bytes(previous)
    launcher, marker = tmp_path / "launch.py", tmp_path / "writing"
    launcher.write_text(LAUNCHER)
    env = dict(os.environ, PYTHONPATH=str(Path(graphpress.__file__).parent.parent))
    child = subprocess.Popen([sys.executable, str(launcher), str(marker), "optimize", str(source), "-p", "dce",
                              "-o", str(output)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert child.poll() is None, child.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    written_to = Path(marker.read_text())
    assert written_to != output and written_to.parent == output.parent  # a sibling temporary, not OUT
    assert output.read_bytes() == previous
    # The only thing a SIGKILL can leave is the hidden temporary; it is never a model under OUT's name.
    leftovers = {p.name for p in output.parent.iterdir()} - {"small.onnx"}
    assert all(name.startswith(".small.onnx.") and name.endswith(".tmp") for name in leftovers), leftovers
