"""Lowering rules for the layers passes reason about: linear, attention, convolution, norms, embedding, pools.

These aten ops are kept whole by the decomposition table (see :mod:`.torch_registry`) and each becomes
one IR node whose inputs are the module's own parameters: ``aten.linear`` -> ``graphpress::Linear``,
``aten.convolution`` -> ``Conv`` /
``ConvTranspose``, ``batch_norm`` -> ``BatchNormalization``, ``layer_norm`` -> ``LayerNormalization``,
``embedding`` -> ``Gather(axis=0)`` on the table. A matrix product by a 2-D parameter stored ``[in, out]``
(GPT-2's ``Conv1D`` uses ``addmm``) also becomes a Linear, through a transposed binding of that parameter, and
so does a product by a transposed ``[out, in]`` parameter (``x @ self.weight.T``).
"""

from __future__ import annotations

import torch
import torch.fx

from ..errors import UnsupportedOpError
from ..ir import GRAPHPRESS_DOMAIN, ModuleBinding, Parameter, Value
from .torch_bindings import TransposedModuleBinding
from .torch_context import LoweringContext
from .torch_registry import lowers
from .torch_rules_quant import product_of_dequantized

__all__: list[str] = []  # rules register themselves; nothing here is called directly

aten = torch.ops.aten


@lowers(aten.linear)
def linear(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    quantized = product_of_dequantized(ctx, a["input"], a["weight"], a["bias"])
    if quantized is not None:  # F.linear(x, layer.weight, ...) of a QuantizedLinear or TritonQuantLinear
        return quantized
    inputs = [a["input"], a["weight"]] + ([a["bias"]] if a["bias"] is not None else [])
    return ctx.emit("Linear", inputs, domain=GRAPHPRESS_DOMAIN)


def _transposed_parameter(ctx: LoweringContext, weight: Value) -> Value | None:
    """The ``[out, in]`` view of a module parameter stored ``[in, out]``, or None if ``weight`` is not one."""
    param = weight.param
    if param is None or param.kind != "parameter" or len(param.shape) != 2:
        return None
    if not isinstance(param.binding, ModuleBinding) or isinstance(param.binding, TransposedModuleBinding):
        return None
    binding = TransposedModuleBinding(param.binding)
    return ctx.graph.add_constant(Parameter(binding, kind="parameter"), name=f"{param.key}.T")


def _parameter_behind_transpose(w: Value) -> Value | None:
    """The ``[out, in]`` module parameter when ``w`` is its transpose (``x @ self.weight.T``, as Falcon's
    ``FalconLinear`` computes a linear), else None; the Transpose then goes unused and is dropped."""
    node = w.producer
    if node is None or node.op != "Transpose" or list(node.attrs.get("perm", ())) != [1, 0]:
        return None
    source = node.inputs[0]
    param = source.param
    if param is None or param.kind != "parameter" or len(param.shape) != 2:
        return None
    return source


@lowers(aten.mm, aten.matmul, aten.bmm)
def matmul(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x, w = (ctx.env[n] for n in node.args[:2])
    if node.target.overloadpacket is not aten.bmm:
        # A product by a 2-D parameter is a Linear: stored [in, out] (bound transposed), or [out, in] read
        # through a transpose in the model's code.
        weight = _parameter_behind_transpose(w) or _transposed_parameter(ctx, w)
        if weight is not None:
            return ctx.emit("Linear", [x, weight], domain=GRAPHPRESS_DOMAIN)
    return ctx.emit("MatMul", [x, w])


@lowers(aten.addmm)
def addmm(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    bias, x, w, beta, alpha = a["self"], a["mat1"], a["mat2"], a["beta"], a["alpha"]
    weight_t = _transposed_parameter(ctx, w)
    if weight_t is not None and beta == 1 and alpha == 1 and bias.rank == 1:
        return ctx.emit("Linear", [x, weight_t, bias], domain=GRAPHPRESS_DOMAIN)
    dtype = ctx.out_meta().dtype
    product = ctx.emit("MatMul", [x, w], shape=ctx.out_meta().shape, dtype=dtype)
    if alpha != 1:
        product = ctx.emit("Mul", [product, ctx.scalar(alpha, dtype)], like=product)
    if beta != 1:
        bias = ctx.emit("Mul", [bias, ctx.scalar(beta, dtype)], like=bias)
    return ctx.emit("Add", [product, bias])


@lowers(aten.convolution)
def convolution(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    return _conv(ctx, a, bool(a["transposed"]))


@lowers(aten.conv1d.default, aten.conv2d.default, aten.conv3d.default)
def conv_nd(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """The pre-dispatch forms (``F.conv2d``), so that a model with convolutions lowers without decomposing."""
    return _conv(ctx, ctx.bind(node), transposed=False)


@lowers(aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding)
def conv_nd_named_padding(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``padding="valid"`` (none) or ``"same"``: torch pads ``dilation * (kernel - 1)`` in all, the odd one at
    the end, which ONNX's begin and end pads spell out."""
    a = ctx.bind(node)
    if a["padding"] == "valid":
        return _conv(ctx, a, transposed=False, pads=[0] * (2 * (len(a["weight"].shape) - 2)))
    kernel = a["weight"].shape[2:]
    total = [d * (k - 1) for d, k in zip(_per_axis(a["dilation"], len(kernel)), kernel)]
    return _conv(ctx, a, transposed=False, pads=[t // 2 for t in total] + [t - t // 2 for t in total])


@lowers(aten.conv_transpose1d.default, aten.conv_transpose2d.input, aten.conv_transpose3d.input)
def conv_transpose_nd(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    return _conv(ctx, ctx.bind(node), transposed=True)


def _per_axis(values, spatial: int) -> list[int]:
    """A conv argument for every spatial axis (torch accepts one value for all)."""
    values = [int(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return values * (spatial if len(values) == 1 else 1)


def _conv(ctx: LoweringContext, a: dict, transposed: bool, pads: list[int] | None = None) -> Value:
    weight: Value = a["weight"]
    spatial = len(weight.shape) - 2
    if pads is None:
        pads = _per_axis(a["padding"], spatial) * 2
    attrs = {
        "kernel_shape": list(weight.shape[2:]),
        "strides": _per_axis(a["stride"], spatial),
        "pads": pads,
        "dilations": _per_axis(a["dilation"], spatial),
        "group": int(a["groups"]),
    }
    inputs = [a["input"], weight] + ([a["bias"]] if a["bias"] is not None else [])
    if transposed:
        attrs["output_padding"] = _per_axis(a["output_padding"], spatial)
        return ctx.emit("ConvTranspose", inputs, attrs)
    return ctx.emit("Conv", inputs, attrs)


def _affine(ctx: LoweringContext, tensor: Value | None, size: int, fill: float, dtype: torch.dtype) -> Value:
    """A norm's scale or shift, or a constant ``fill`` vector when the module has none (affine=False)."""
    return tensor if tensor is not None else ctx.const(torch.full((size,), fill, dtype=dtype), hint="affine")


def _batch_norm(ctx: LoweringContext, x: Value, weight: Value | None, bias: Value | None, mean: Value,
                var: Value, momentum: float | None, eps: float) -> Value:
    channels, dtype = x.shape[1], x.dtype
    inputs = [x, _affine(ctx, weight, channels, 1.0, dtype), _affine(ctx, bias, channels, 0.0, dtype), mean, var]
    # ONNX weighs the running statistic by momentum, torch weighs the new batch by it.
    attrs = {"epsilon": float(eps), "momentum": 1.0 - float(momentum if momentum is not None else 0.1)}
    return ctx.emit("BatchNormalization", inputs, attrs, like=x)


@lowers(aten.batch_norm)
def batch_norm(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    if a["training"] or a["running_mean"] is None:
        raise UnsupportedOpError(f"{ctx.describe()} runs in training mode; call model.eval() before tracing")
    return _batch_norm(ctx, a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["momentum"],
                       a["eps"])


@lowers(aten._native_batch_norm_legit_no_training)
def batch_norm_inference(ctx: LoweringContext, node: torch.fx.Node) -> list[Value | None]:
    # What export emits for an eval-mode BatchNorm; outputs 1-2 (saved statistics) are empty and unused.
    a = ctx.bind(node)
    out = _batch_norm(ctx, a["input"], a["weight"], a["bias"], a["running_mean"], a["running_var"], a["momentum"],
                      a["eps"])
    return [out, None, None]


@lowers(aten._native_batch_norm_legit)
def batch_norm_batch_statistics(ctx: LoweringContext, node: torch.fx.Node) -> list[Value | None]:
    """``F.batch_norm(x, None, None, training=True)``: normalization by the statistics of ``x`` itself, which no
    running statistics replace, so eval mode computes it too (weight standardization: NFNet's ScaledStdConv2d
    normalizes its own weight this way). Outputs 1-2 (saved statistics) are for autograd and unused."""
    a = ctx.bind(node)
    if a.get("running_mean") is not None:
        raise UnsupportedOpError(f"{ctx.describe()} runs in training mode; call model.eval() before tracing")
    x: Value = a["input"]
    axes = ctx.ints([0] + list(range(2, len(x.shape))), hint="axes")
    stat_shape = (1, x.shape[1]) + (1,) * (len(x.shape) - 2)
    mean = ctx.emit("ReduceMean", [x, axes], {"keepdims": 1}, shape=stat_shape, dtype=x.dtype)
    centered = ctx.emit("Sub", [x, mean], like=x)
    squared = ctx.emit("Mul", [centered, centered], like=x)
    variance = ctx.emit("ReduceMean", [squared, axes], {"keepdims": 1}, shape=stat_shape, dtype=x.dtype)
    shifted = ctx.emit("Add", [variance, ctx.scalar(float(a["eps"]), x.dtype)], shape=stat_shape, dtype=x.dtype)
    deviation = ctx.emit("Sqrt", [shifted], shape=stat_shape, dtype=x.dtype)
    normed = ctx.emit("Div", [centered, deviation], like=x)
    return [_channel_affine(ctx, normed, a["weight"], a["bias"]), None, None]


@lowers(aten.layer_norm)
def layer_norm(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    normalized = list(a["normalized_shape"])
    size, dtype = int(torch.Size(normalized).numel()), a["input"].dtype
    if len(normalized) != 1 and (a["weight"] is None or a["bias"] is None):
        raise UnsupportedOpError(f"{ctx.describe()}: a multi-axis LayerNorm without affine parameters")
    inputs = [a["input"], _affine(ctx, a["weight"], size, 1.0, dtype), _affine(ctx, a["bias"], size, 0.0, dtype)]
    return ctx.emit("LayerNormalization", inputs, {"axis": -len(normalized), "epsilon": float(a["eps"])})


@lowers(aten._fused_rms_norm, aten.rms_norm)
def rms_norm(ctx: LoweringContext, node: torch.fx.Node) -> Value | list[Value]:
    """``x * rsqrt(mean(x^2) + eps) * weight`` over the trailing ``normalized_shape`` axes, in float32 for
    half-precision inputs as torch's kernels do. ``F.rms_norm`` reaches the export as ``rms_norm`` (which the
    default decomposition also writes out) or, on CUDA, as ``_fused_rms_norm``, which also returns the
    reciprocal RMS."""
    a = ctx.bind(node)
    x: Value = a["input"]
    dtype = x.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    rank, count = len(x.shape), len(a["normalized_shape"])
    axes = ctx.ints(list(range(rank - count, rank)), hint="axes")
    eps = a["eps"] if a["eps"] is not None else torch.finfo(dtype).eps
    wide = ctx.cast(x, compute)
    kept = tuple(d if i < rank - count else 1 for i, d in enumerate(x.shape))
    mean_square = ctx.emit("ReduceMean", [ctx.emit("Mul", [wide, wide], like=wide), axes], {"keepdims": 1},
                           shape=kept, dtype=compute)
    shifted = ctx.emit("Add", [mean_square, ctx.scalar(float(eps), compute)], like=mean_square)
    inverse = ctx.emit("Reciprocal", [ctx.emit("Sqrt", [shifted], like=shifted)], like=shifted)
    out = ctx.cast(ctx.emit("Mul", [wide, inverse], like=wide), dtype)
    if a["weight"] is not None:
        out = ctx.emit("Mul", [out, ctx.cast(a["weight"], dtype)], like=out)
    if node.target.overloadpacket is aten.rms_norm:
        return out
    rstd_meta = ctx.out_meta(1)
    return [out, ctx.cast(inverse, rstd_meta.dtype)]


@lowers(aten.group_norm)
def group_norm(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    # Opset 18's GroupNormalization takes per-group scale/bias (changed in opset 21), so the per-channel
    # affine stays a separate Mul/Add on the module's own parameters: InstanceNormalization over the
    # [N, G, rest] view computes exactly the group statistics.
    a = ctx.bind(node)
    x: Value = a["input"]
    groups, dtype = int(a["num_groups"]), x.dtype
    grouped_shape = (x.shape[0], groups, -1)
    grouped = ctx.emit("Reshape", [x, ctx.ints(grouped_shape)], shape=(x.shape[0], groups,
                       int(torch.Size(x.shape[1:]).numel()) // groups), dtype=dtype)
    ones, zeros = ctx.const(torch.ones(groups, dtype=dtype)), ctx.const(torch.zeros(groups, dtype=dtype))
    normed = ctx.emit("InstanceNormalization", [grouped, ones, zeros], {"epsilon": float(a["eps"])}, like=grouped)
    out = ctx.emit("Reshape", [normed, ctx.ints(x.shape)], like=x)
    return _channel_affine(ctx, out, a["weight"], a["bias"])


def _channel_affine(ctx: LoweringContext, x: Value, weight: Value | None, bias: Value | None) -> Value:
    """``x * weight + bias`` per channel (dim 1) as Mul/Add on the module's own parameters, either optional."""
    broadcast_axes = list(range(1, len(x.shape) - 1))
    for param, op in ((weight, "Mul"), (bias, "Add")):
        if param is not None:
            shaped = ctx.emit("Unsqueeze", [param, ctx.ints(broadcast_axes)],
                              shape=(param.shape[0],) + (1,) * len(broadcast_axes), dtype=param.dtype)
            x = ctx.emit(op, [x, shaped], like=x)
    return x


@lowers(aten.embedding)
def embedding(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    return ctx.emit("Gather", [a["weight"], a["indices"]], {"axis": 0})


def _pool_attrs(kernel: list[int], stride: list[int], padding: list[int], spatial: int) -> dict:
    def per_dim(values: list[int], default: list[int]) -> list[int]:
        values = list(values) or default
        return values * spatial if len(values) == 1 else values

    pads = per_dim(padding, [0])
    return {"kernel_shape": per_dim(kernel, []), "strides": per_dim(stride, list(kernel)), "pads": pads + pads}


@lowers(aten.max_pool2d, aten.max_pool1d)
def max_pool(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    x: Value = a["self"]
    attrs = _pool_attrs(a["kernel_size"], a["stride"], a["padding"], len(x.shape) - 2)
    dilation = list(a["dilation"])
    attrs["dilations"] = dilation * (len(x.shape) - 2) if len(dilation) == 1 else dilation
    attrs["ceil_mode"] = int(bool(a["ceil_mode"]))
    return ctx.emit("MaxPool", [x], attrs)


@lowers(aten.avg_pool2d, aten.avg_pool1d)
def avg_pool(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    a = ctx.bind(node)
    x: Value = a["self"]
    if a.get("divisor_override") is not None:
        raise UnsupportedOpError(f"{ctx.describe()}: avg_pool with divisor_override has no ONNX form")
    attrs = _pool_attrs(a["kernel_size"], a["stride"], a["padding"], len(x.shape) - 2)
    attrs["ceil_mode"] = int(bool(a["ceil_mode"]))
    attrs["count_include_pad"] = int(bool(a["count_include_pad"]))
    return ctx.emit("AveragePool", [x], attrs)


@lowers(aten.adaptive_avg_pool2d, aten._adaptive_avg_pool2d, aten.adaptive_avg_pool1d)
def adaptive_avg_pool(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    x: Value = ctx.env[node.args[0]]
    in_sizes, out_sizes = list(x.shape[2:]), list(ctx.out_meta().shape[2:])
    if all(o == 1 for o in out_sizes):
        return ctx.emit("GlobalAveragePool", [x])
    if any(i % o for i, o in zip(in_sizes, out_sizes)):
        return _uneven_adaptive_pool(ctx, x, in_sizes, out_sizes)
    kernel = [i // o for i, o in zip(in_sizes, out_sizes)]
    return ctx.emit("AveragePool", [x], {"kernel_shape": kernel, "strides": kernel, "pads": [0] * 2 * len(kernel)})


def _uneven_adaptive_pool(ctx: LoweringContext, x: Value, in_sizes: list[int], out_sizes: list[int]) -> Value:
    """Adaptive average pooling whose windows differ in size (7x7 from 10x10, or 6x6 from 1x1 as AlexNet and VGG
    do on small images), which no AveragePool expresses. torch's window ``i`` spans
    ``[floor(i * n / m), ceil((i + 1) * n / m))``; a window is a product of intervals, so its mean is the mean
    over one axis of the means over the other: per spatial axis, one Slice + ReduceMean a window, concatenated."""
    out = x
    for offset, (size, count) in enumerate(zip(in_sizes, out_sizes)):
        axis = 2 + offset
        if size == count:
            continue
        cells = []
        for i in range(count):
            start, end = (i * size) // count, -((-(i + 1) * size) // count)
            shape = tuple(1 if d == axis else s for d, s in enumerate(out.shape))
            window = ctx.slice_axis(out, axis, start, end)
            cells.append(ctx.emit("ReduceMean", [window, ctx.ints([axis], hint="axes")], {"keepdims": 1},
                                  shape=shape, dtype=out.dtype))
        shape = tuple(count if d == axis else s for d, s in enumerate(out.shape))
        out = ctx.emit("Concat", cells, {"axis": axis}, shape=shape, dtype=out.dtype) if count > 1 else cells[0]
    return out


@lowers(aten.upsample_nearest2d, aten.upsample_bilinear2d)
def upsample(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    # torch's nearest picks floor(out_index * in / out): ONNX "asymmetric" + "floor". Bilinear maps
    # pixel centres ("half_pixel"), or corners when align_corners=True.
    x: Value = ctx.env[node.args[0]]
    sizes = ctx.ints(list(ctx.out_meta().shape), hint="sizes")
    if node.target.overloadpacket is aten.upsample_nearest2d:
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        align = node.args[2] if len(node.args) > 2 else node.kwargs.get("align_corners", False)
        attrs = {"mode": "linear", "coordinate_transformation_mode": "align_corners" if align else "half_pixel"}
    return ctx.emit("Resize", [x, None, None, sizes], attrs)


_GRID_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_GRID_PADDING = {0: "zeros", 1: "border", 2: "reflection"}


@lowers(aten.grid_sampler_2d)
def grid_sample(ctx: LoweringContext, node: torch.fx.Node) -> Value:
    """``F.grid_sample`` (4-D): ONNX GridSample (opset 16), the same modes, padding and corner convention
    (the multi-scale deformable attention of RT-DETR, Deformable-DETR, Mask2Former, Grounding-DINO)."""
    a = ctx.bind(node)
    x, grid = a["input"], ctx.cast(a["grid"], a["input"].dtype)
    attrs = {"mode": _GRID_MODES[int(a["interpolation_mode"])],
             "padding_mode": _GRID_PADDING[int(a["padding_mode"])],
             "align_corners": int(bool(a["align_corners"]))}
    return ctx.emit("GridSample", [x, grid], attrs)
