"""The ONNX model zoo's classic CNNs as they ship inside the ``onnx`` wheel, given random weights.

The ``onnx`` package carries nine files of its model zoo (AlexNet, DenseNet-121, Inception v1/v2, ResNet-50,
ShuffleNet v1, SqueezeNet, VGG-19, ZFNet-512) under ``onnx/backend/test/data/light``: real architectures
written by another exporter (onnx-caffe2, opset 9, IR version 3, so every initializer is also listed as a
graph input), with grouped convolutions, LRN, channel shuffles, caffe2's spatial batch norm and ``Sum``.
They are "light": every weight is ``ConstantOfShape(shape)`` of one value, which makes every channel the
same and every importance a tie. :func:`materialize_weights` replaces those nodes with random initializers
of the same shapes (scaled like a trained network's, so activations neither vanish nor explode), keeping
the IR-3 habit of listing them as inputs. Nothing downloads: the files come with ``pip install onnx``.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .compare import fed_inputs

__all__ = ["light_model_paths", "materialize_weights", "model_inputs"]


def light_model_paths() -> dict[str, str]:
    """Name (``resnet50``, ``shufflenet``...) -> path of each light zoo file the installed onnx carries."""
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    paths = sorted(glob.glob(os.path.join(folder, "light_*.onnx")))
    return {os.path.basename(p)[len("light_"):-len(".onnx")]: p for p in paths}


def _random_weight(rng: np.random.Generator, shape: list[int], consumer: tuple[str, int]) -> np.ndarray:
    op, slot = consumer
    if op in ("Conv", "Gemm", "MatMul") and slot == 1:  # He initialisation over the fan-in
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(int(np.prod(shape[1:])), 1))
    if (op == "BatchNormalization" and slot in (1, 4)) or op == "Mul":  # scales and variances: positive, near 1
        return rng.uniform(0.5, 1.5, shape)
    return rng.standard_normal(shape) * 0.1


def materialize_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` whose ``ConstantOfShape(initializer)`` weights are random initializers."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph, rng = model.graph, np.random.default_rng(seed)
    stored = {t.name: t for t in graph.initializer}
    consumer = {x: (n.op_type, k) for n in reversed(graph.node) for k, x in enumerate(n.input)}
    kept, weights, shapes = [], [], set()
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in stored:
            shape = [int(v) for v in numpy_helper.to_array(stored[node.input[0]])]
            array = _random_weight(rng, shape, consumer.get(node.output[0], ("", 0)))
            weights.append(numpy_helper.from_array(array.astype(np.float32), node.output[0]))
            shapes.add(node.input[0])
        else:
            kept.append(node)
    shapes -= {x for n in kept for x in n.input}
    graph.ClearField("node")
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if t.name not in shapes] + weights
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    inputs = [i for i in graph.input if i.name not in shapes]
    if model.ir_version < 4:  # IR 3 lists every initializer as a graph input too
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in weights]
    graph.ClearField("input")
    graph.input.extend(inputs)
    return model


def model_inputs(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    """Random float inputs for the graph inputs that are not initializers (unknown dims set to 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for value in fed_inputs(model.graph):
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        out[value.name] = rng.standard_normal(shape).astype(np.float32)
    return out
