"""A merge that fails midway leaves no partial output, and an earlier output stays intact."""

from __future__ import annotations

import hashlib

import pytest

from graphpress.merging import merge_models
from graphpress.merging.registry import MergeMethod


def folder_digest(folder) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def fail_on_call(monkeypatch, failing_call: int, error: BaseException) -> None:
    """Make the ``failing_call``-th merged tensor raise ``error``, as a crash or Ctrl-C midway would."""
    original_apply = MergeMethod.apply
    calls = {"count": 0}

    def apply(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] == failing_call:
            raise error
        return original_apply(self, *args, **kwargs)

    monkeypatch.setattr(MergeMethod, "apply", apply)


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_midway_keeps_the_previous_output(make_llama, tmp_path, monkeypatch, error):
    base, one, two = make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)
    output = tmp_path / "merged"
    merge_models(base, [one, two], method="linear", output=output, max_shard_bytes=8_000)
    before = folder_digest(output)

    fail_on_call(monkeypatch, failing_call=7, error=error)
    with pytest.raises(type(error)):
        merge_models(base, [one, two], method="task_arithmetic", output=output, max_shard_bytes=8_000)

    assert folder_digest(output) == before
    leftovers = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("."))
    assert leftovers == []


def test_failure_without_previous_output_leaves_nothing(make_llama, tmp_path, monkeypatch):
    base, one, two = make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)
    fail_on_call(monkeypatch, failing_call=3, error=RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        merge_models(base, [one, two], method="linear", output=tmp_path / "merged")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["base", "one", "two"]


def test_success_replaces_the_previous_output_completely(make_llama, tmp_path):
    base, one, two = make_llama("base", 0), make_llama("one", 1), make_llama("two", 2)
    output = tmp_path / "merged"
    merge_models(base, [one, two], method="linear", output=output, max_shard_bytes=8_000)
    assert (output / "model.safetensors.index.json").exists()
    merge_models(base, [one, two], method="linear", output=output)
    # the shards of the earlier sharded output do not linger beside the new single file
    assert not (output / "model.safetensors.index.json").exists()
    assert [path.name for path in output.glob("*.safetensors")] == ["model.safetensors"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]
