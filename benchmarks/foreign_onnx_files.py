"""Write models of other frameworks (random weights) as ONNX files through their own exporters, for
``onnx_sweep.py --folder``.

The files graphpress meets in the field come from exporters other than PyTorch's, and look like none of its:

* ``keras`` (tf2onnx, the exporter most TensorFlow users ship ONNX with): NHWC layouts wrapped in Transposes,
  Dense on a sequence as Reshape -> MatMul -> Reshape with shapes computed at run time, attention's einsums,
  LayerNormalization as a BatchNormalization over reshaped tokens. Each model at opsets 13 and 17.
* ``paddle`` (paddle2onnx, behind PaddleOCR and PaddleDetection deployments): paddle.vision's CNNs, opset 13.

Every file has a fixed batch of 1 and its inputs in a ``.npz`` of the same name. Each needs its framework,
which graphpress does not depend on; run it in a separate environment::

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.16.1
    /tmp/tf/bin/python benchmarks/foreign_onnx_files.py keras /tmp/foreign-onnx
    python -m venv /tmp/pd && /tmp/pd/bin/pip install paddlepaddle==3.3.1 paddle2onnx==2.1.0 packaging onnx
    /tmp/pd/bin/python benchmarks/foreign_onnx_files.py paddle /tmp/foreign-onnx
    PYTHONPATH=. python benchmarks/onnx_sweep.py --folder /tmp/foreign-onnx --output /tmp/foreign.md
"""

from __future__ import annotations

import argparse
import os
from typing import Callable

import numpy as np


def _keras_models() -> dict[str, Callable]:
    import tensorflow as tf

    layers, apps = tf.keras.layers, tf.keras.applications

    def text_transformer():
        tokens = tf.keras.Input((16,), dtype="int32", name="tokens")
        x = layers.Embedding(100, 64)(tokens)
        for _ in range(2):
            x = layers.LayerNormalization()(x + layers.MultiHeadAttention(num_heads=4, key_dim=16)(x, x))
            x = layers.LayerNormalization()(x + layers.Dense(64)(layers.Dense(128, activation="gelu")(x)))
        return tf.keras.Model(tokens, layers.Dense(10)(layers.GlobalAveragePooling1D()(x)))

    def mlp():
        features = tf.keras.Input((32,), name="features")
        x = layers.BatchNormalization()(layers.Dense(128, activation="relu")(features))
        return tf.keras.Model(features, layers.Dense(4)(layers.Dense(64, activation="swish")(x)))

    def conv1d():
        signal = tf.keras.Input((64, 8), name="signal")
        x = layers.Conv1D(32, 5, padding="same", activation="relu")(signal)
        x = layers.MaxPooling1D(2)(layers.SeparableConv1D(48, 3, padding="same", activation="relu")(x))
        x = layers.GlobalMaxPooling1D()(layers.Conv1D(64, 3, activation="relu")(x))
        return tf.keras.Model(signal, layers.Dense(5)(x))

    image = dict(weights=None, classes=10)
    return {
        "keras_mobilenet_v2": lambda: apps.MobileNetV2((96, 96, 3), alpha=0.35, **image),
        "keras_mobilenet_v3_small": lambda: apps.MobileNetV3Small((96, 96, 3), alpha=0.75, **image,
                                                                  include_preprocessing=False),
        "keras_efficientnet_b0": lambda: apps.EfficientNetB0(input_shape=(64, 64, 3), **image),
        "keras_resnet50": lambda: apps.ResNet50(input_shape=(64, 64, 3), **image),
        "keras_densenet121": lambda: apps.DenseNet121(input_shape=(64, 64, 3), **image),
        "keras_xception": lambda: apps.Xception(input_shape=(71, 71, 3), **image),
        "keras_convnext_tiny": lambda: apps.ConvNeXtTiny(input_shape=(64, 64, 3), **image,
                                                         include_preprocessing=False),
        "keras_vgg16": lambda: apps.VGG16(input_shape=(32, 32, 3), **image),
        "keras_nasnet_mobile": lambda: apps.NASNetMobile(input_shape=(64, 64, 3), **image),
        "keras_text_transformer": text_transformer,
        "keras_mlp": mlp,
        "keras_conv1d": conv1d,
    }


def write_keras(folder: str, only: list[str]) -> None:
    import tensorflow as tf
    import tf2onnx

    for name, build in _keras_models().items():
        if only and name not in only:
            continue
        tf.random.set_seed(0)
        rng = np.random.default_rng(0)
        model = build()
        for layer in model.layers:  # statistics that are not the identity, so that folding them shows
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                channels = layer.moving_mean.shape[0]
                layer.moving_mean.assign(rng.standard_normal(channels).astype(np.float32) * 0.1)
                layer.moving_variance.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
        spec = [tf.TensorSpec((1, *i.shape[1:]), i.dtype, name=i.name.split(":")[0]) for i in model.inputs]
        inputs = {s.name: rng.integers(0, 100, s.shape).astype(np.int32) if s.dtype.is_integer
                  else rng.standard_normal(s.shape).astype(np.float32) for s in spec}
        for opset in (13, 17):
            stem = os.path.join(folder, f"{name}_opset{opset}")
            tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=stem + ".onnx")
            np.savez(stem + ".npz", **inputs)
        print("wrote", name, flush=True)


def write_paddle(folder: str, only: list[str]) -> None:
    import paddle
    from paddle.vision import models

    builders = {
        "paddle_resnet18": lambda: models.resnet18(num_classes=10),
        "paddle_mobilenet_v3_small": lambda: models.mobilenet_v3_small(num_classes=10, scale=0.5),
        "paddle_shufflenet_v2": lambda: models.shufflenet_v2_x0_5(num_classes=10),
        "paddle_squeezenet": lambda: models.squeezenet1_1(num_classes=10),
    }
    for name, build in builders.items():
        if only and name not in only:
            continue
        paddle.seed(0)
        model = build()
        model.eval()
        stem = os.path.join(folder, name)
        paddle.onnx.export(model, stem, input_spec=[paddle.static.InputSpec([1, 3, 64, 64], "float32", "image")],
                           opset_version=13)
        np.savez(stem + ".npz", image=np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))
        print("wrote", name, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=("keras", "paddle"))
    parser.add_argument("folder")
    parser.add_argument("--only", default="", help="comma-separated model names (default: all)")
    args = parser.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    only = [n for n in args.only.split(",") if n]
    (write_keras if args.framework == "keras" else write_paddle)(args.folder, only)


if __name__ == "__main__":
    main()
