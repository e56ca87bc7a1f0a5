"""Lowering rule for ``F.fold`` (``aten.col2im``): sliding-window patches summed back into an image.

``F.fold`` takes ``[N, C * kh * kw, L]`` (one column per window position) and adds every column's values
into the image positions its window covered. Torch's own decomposition writes that as ``index_put`` with
``accumulate=True``, an op whose coupling would be opaque; here it is built from ops the coupling analysis
already follows, so the channel axis ``C`` stays prunable (MobileViT-v2 folds its patches back this way):

* windows that tile the image exactly (stride = kernel, no dilation or padding): a reshape, a transpose and
  a reshape, the usual patch-to-image rearrangement;
* otherwise, for each kernel offset ``(i, j)``, that offset's ``[N, C, Lh, Lw]`` slice spread onto the
  stride grid (zeros between), shifted to ``(i * dh, j * dw)`` by ``Pad``, and all ``kh * kw`` of them added;
  the padding is cropped at the end.
"""

from __future__ import annotations

import torch
import torch.fx

from ..errors import UnsupportedOpError
from ..ir import Value
from .torch_context import LoweringContext
from .torch_registry import lowers

__all__: list[str] = []  # rules register themselves

aten = torch.ops.aten


def _pad(ctx: LoweringContext, x: Value, begins: list[int], ends: list[int]) -> Value:
    shape = tuple(s + b + e for s, b, e in zip(x.shape, begins, ends))
    return ctx.emit("Pad", [x, ctx.ints(begins + ends, hint="pads"), ctx.scalar(0, x.dtype)], shape=shape,
                    dtype=x.dtype)


def _placed(ctx: LoweringContext, part: Value, offset: tuple[int, int], stride: tuple[int, int],
            padded: tuple[int, int]) -> Value:
    """``part`` ``[N, C, Lh, Lw]`` with element ``(a, b)`` moved to ``(offset + a * stride)`` of a zero image of
    size ``padded``."""
    n, c, lh, lw = part.shape
    (sh, sw), (oh, ow) = stride, offset
    spread = _pad(ctx, ctx.reshape(part, (n, c, lh, 1, lw, 1)), [0, 0, 0, 0, 0, 0], [0, 0, 0, sh - 1, 0, sw - 1])
    grid = ctx.reshape(spread, (n, c, lh * sh, lw * sw))
    ends = [padded[0] - oh - lh * sh, padded[1] - ow - lw * sw]
    placed = _pad(ctx, grid, [0, 0, oh, ow], [0, 0, max(ends[0], 0), max(ends[1], 0)])
    for axis, end in ((2, ends[0]), (3, ends[1])):
        if end < 0:  # the stride grid runs past the image: drop its empty tail
            placed = ctx.slice_axis(placed, axis, 0, padded[axis - 2])
    return placed


@lowers(aten.col2im)
def col2im(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    x: Value = a["self"]
    (height, width), (kh, kw) = a["output_size"], a["kernel_size"]
    (dh, dw), (ph, pw), (sh, sw) = a["dilation"], a["padding"], a["stride"]
    batched = len(x.shape) == 3
    if not batched:
        x = ctx.reshape(x, (1, *x.shape))
    n, columns, count = x.shape
    lh = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    lw = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if columns % (kh * kw) or lh * lw != count:
        raise UnsupportedOpError(f"{ctx.describe()}: {columns} x {count} columns do not fit {kh}x{kw} windows "
                                 f"over {height}x{width}")
    channels = columns // (kh * kw)
    windows = ctx.reshape(x, (n, channels, kh, kw, lh, lw))
    if (sh, sw) == (kh, kw) and (dh, dw) == (1, 1) and (ph, pw) == (0, 0) and (lh * kh, lw * kw) == (height, width):
        tiled = ctx.emit("Transpose", [windows], {"perm": [0, 1, 4, 2, 5, 3]}, shape=(n, channels, lh, kh, lw, kw),
                         dtype=x.dtype)
        image = ctx.reshape(tiled, (n, channels, height, width))
    else:
        padded = (height + 2 * ph, width + 2 * pw)
        image = None
        for i in range(kh):
            for j in range(kw):
                part = ctx.slice_axis(ctx.slice_axis(windows, 2, i, i + 1), 3, j, j + 1)
                placed = _placed(ctx, ctx.reshape(part, (n, channels, lh, lw)), (i * dh, j * dw), (sh, sw), padded)
                image = placed if image is None else ctx.emit("Add", [image, placed], like=placed)
        image = ctx.slice_axis(ctx.slice_axis(image, 2, ph, ph + height), 3, pw, pw + width)
    return image if batched else ctx.reshape(image, tuple(image.shape[1:]))
