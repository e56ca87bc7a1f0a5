"""The on-disk autotune cache: keys, M buckets, and a choice surviving into a fresh cache object."""

import json

import pytest
import torch

pytest.importorskip("triton")

from graphpress.backends.triton.autotune import AutotuneCache, m_bucket, tuning_key  # noqa: E402
from graphpress.backends.triton.configs import LaunchConfig  # noqa: E402


def test_m_buckets_keep_decode_sizes_apart_and_group_prefill_sizes():
    assert [m_bucket(m) for m in (1, 2, 3, 16, 17, 64, 65, 130, 5000)] == [1, 2, 4, 16, 32, 64, 128, 192, 512]


def test_a_stored_choice_is_read_by_another_cache_object(tmp_path):
    path = tmp_path / "cache.json"
    key = tuning_key("H100", "gemv", 4, 128, 1, 12288, 4096, "bfloat16")
    config = LaunchConfig(1, 256, 32, 8, 4, 1)
    AutotuneCache(path).put(key, config)
    other = AutotuneCache(path)  # as a second process would
    other.put(tuning_key("H100", "small", 4, 128, 16, 4096, 4096, "bfloat16"), LaunchConfig(16, 64, 64, 2, 4, 3))
    assert AutotuneCache(path).get(key) == config
    assert len(json.loads(path.read_text())) == 2  # the second writer kept the first writer's entry


def test_an_unreadable_cache_is_ignored(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    assert AutotuneCache(path).get("anything") is None


def test_an_entry_written_by_another_version_is_tuned_again(tmp_path):
    # A field this version does not know (or lacks) must not make every product on that shape fail.
    path = tmp_path / "cache.json"
    entry = {**LaunchConfig(16, 64, 64, 2, 4, 3).to_dict(), "field_of_a_later_version": 1}
    path.write_text(json.dumps({"key": entry}))
    assert AutotuneCache(path).get("key") is None


@pytest.mark.parametrize("value, enabled", [(None, True), ("1", True), ("0", False), ("off", False), ("False", False)])
def test_autotuning_can_be_switched_off_by_the_environment(monkeypatch, value, enabled):
    from graphpress.backends.triton.ops import tuning_enabled

    if value is None:
        monkeypatch.delenv("GRAPHPRESS_AUTOTUNE", raising=False)
    else:
        monkeypatch.setenv("GRAPHPRESS_AUTOTUNE", value)
    assert tuning_enabled() is enabled


def test_an_untuned_default_that_does_not_fit_the_gpu_gives_way_to_the_next_candidate(monkeypatch):
    """Found on the H100 (convnext, group 32, tuning off): the default launch needed 240 KB of shared memory."""
    from triton.runtime.errors import OutOfResources

    from graphpress.backends.triton import ops
    from graphpress.backends.triton.configs import default_config
    from graphpress.backends.triton.layout import repack_for_kernels
    from graphpress.backends.triton.reference import rtn_quantize

    packed = rtn_quantize(torch.randn(128, 256), 4, 32)
    w = repack_for_kernels(packed.qweight, packed.scales, packed.zeros, 4, 32, 256, torch.float16)
    x = torch.randn(128, 256)
    tried = []

    def launch(x2d, weights, config, out):
        tried.append(config)
        if len(tried) == 1:
            raise OutOfResources(245760, 232448, "shared memory")

    monkeypatch.setattr(ops, "_launch", launch)
    chosen = ops._runnable_default(x, w, 132, False)
    assert tried[0] == default_config(128, 128, 256, 32, 132, False, 4) and chosen == tried[1] != tried[0]
    monkeypatch.setattr(ops, "_launch", lambda *a: (_ for _ in ()).throw(OutOfResources(1, 0, "shared memory")))
    with pytest.raises(RuntimeError, match="no launch configuration fits this GPU"):
        ops._runnable_default(x, w, 132, False)


def test_the_staged_search_finds_the_best_split_of_the_best_tiles_with_fewer_timings():
    """Round one times each tile once (at about four programs per multiprocessor), round two every split of
    the fastest tiles: the overall best is found although its split was not the one probed."""
    from graphpress.backends.triton.autotune import staged_search
    from graphpress.backends.triton.configs import LaunchConfig

    candidates = [LaunchConfig(1, block_n, 64, split, 4, 1) for block_n in (32, 64, 128, 256, 512, 1024)
                  for split in (1, 2, 4, 8, 16)]
    tile_cost = {32: 9.0, 64: 5.0, 128: 6.0, 256: 7.0, 512: 8.0, 1024: 10.0}
    timed = []

    def time_of(config):
        timed.append(config)
        if config.block_n == 1024 and config.split_k == 16:
            return None  # does not compile here
        return tile_cost[config.block_n] + abs(config.split_k - 16) / 10  # every tile is best at split 16

    def programs(config):
        return 4096 // config.block_n * config.split_k

    best, us, count = staged_search(candidates, time_of, programs, multiprocessors=132, keep=2)
    assert best == LaunchConfig(1, 64, 64, 16, 4, 1) and us == 5.0
    assert count == len(set(timed)) < len(candidates)  # 6 probes + the other splits of two tiles
    assert len(set(timed)) == 6 + 2 * 4
