"""Side-by-side timing takes turns in blocks and skips the first call after each switch."""

import pytest

from graphpress.backends.onnx.side_by_side import median_ms_in_blocks


def test_blocks_alternate_and_the_switch_call_is_untimed():
    order: list[str] = []
    calls = {name: (lambda n=name: order.append(n)) for name in ("a", "b")}
    medians = median_ms_in_blocks(calls, count=4, block=2, warmup=1)
    assert set(medians) == {"a", "b"} and all(ms >= 0 for ms in medians.values())
    # warm-ups, then per round: one untimed + two timed calls of a, the same of b; two rounds.
    assert order == ["a", "b"] + (["a"] * 3 + ["b"] * 3) * 2


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="count and block must be positive"):
        median_ms_in_blocks({"a": lambda: None}, count=0)
