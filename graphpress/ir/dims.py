"""Arithmetic on shapes whose dims may be symbols (strings) known only at run time."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["solve_reshape_dims"]


def solve_reshape_dims(in_shape: Sequence, out_shape: Sequence) -> tuple[tuple, tuple]:
    """The two sides of a reshape with a run-time dim replaced by its size where the element count fixes it.

    A reshape keeps the element count, so after cancelling the symbols both sides share, one symbol left on
    one side and none on the other is the ratio of the static dims: ``[b, s, 4, 8] -> [b, s, d]`` (heads
    merged back with ``-1`` for the width, which ONNX shape inference leaves unknown) gives ``d = 32``.
    Anything else is returned unchanged.
    """
    ins, outs = list(in_shape), list(out_shape)
    left = [d for d in ins if isinstance(d, str)]
    right = [d for d in outs if isinstance(d, str)]
    for symbol in list(left):
        if symbol in right:
            left.remove(symbol)
            right.remove(symbol)
    static_in = int(np.prod([d for d in ins if not isinstance(d, str)]))
    static_out = int(np.prod([d for d in outs if not isinstance(d, str)]))
    for unknown, known, shape, numerator, denominator in ((right, left, outs, static_in, static_out),
                                                          (left, right, ins, static_out, static_in)):
        if len(unknown) == 1 and not known and denominator and numerator % denominator == 0 \
                and shape.count(unknown[0]) == 1:
            shape[shape.index(unknown[0])] = numerator // denominator
    return tuple(ins), tuple(outs)
