"""A small ReActNet-shaped Larq model converted with LCE: the patterns the fusion pass and the MCU build meet.

Float stem conv -> RPReLU -> (2x2 average pool | threshold, +1 pad, stride-2 binary conv) -> shortcut add
-> RPReLU -> two 1x1 binary branches with shortcuts -> concatenation -> RPReLU -> pool -> dense. Weights
and thresholds are seeded random values; only the graph's shape matters here.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow (larq needs tf-keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHAPE = (16, 16, 1)
CLASSES = 4


def reactnet_like(seed: int = 0) -> bytes:
    """The LCE flatbuffer of the model (TensorFlow, Larq and LCE are imported here only)."""
    import larq as lq
    import larq_compute_engine as lce
    import tensorflow as tf
    import tf_keras as keras

    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)

    def const(channels: int, scale: float = 0.3) -> np.ndarray:
        return rng.normal(0.0, scale, (channels,)).astype(np.float32)

    def plus(x, channels: int):
        c = const(channels)
        return keras.layers.Lambda(lambda t: t + c)(x)

    def minus(x, channels: int):
        c = const(channels)
        return keras.layers.Lambda(lambda t: t - c)(x)

    def rprelu(x, channels: int):
        x = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2])(minus(x, channels))
        return plus(x, channels)

    def bconv(x, filters: int, kernel: int, strides: int = 1):
        x = lq.layers.QuantConv2D(filters, kernel, strides=strides, padding="valid", use_bias=False,
                                  input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint=None)(x)
        return keras.layers.BatchNormalization()(x)

    inputs = keras.Input(SHAPE, batch_size=1)
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2])(x)
    x = plus(x, 16)
    shortcut = keras.layers.AveragePooling2D(2)(x)
    t = minus(x, 16)
    t = keras.layers.Lambda(lambda t: tf.pad(t, [[0, 0], [0, 1], [0, 1], [0, 0]], constant_values=1.0))(t)
    x = keras.layers.Add()([bconv(t, 16, 3, strides=2), shortcut])
    x = rprelu(x, 16)
    branches = []
    for _ in range(2):
        t = minus(x, 16)
        branches.append(keras.layers.Add()([bconv(t, 16, 1), x]))
    x = rprelu(keras.layers.Concatenate()(branches), 32)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES)(x)
    model = keras.Model(inputs, outputs)
    for layer in model.layers:
        weights = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            n = weights[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 1, n), rng.normal(0, 2, n), rng.uniform(0.5, 4, n)])
        elif weights and type(layer).__name__ != "PReLU":
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in weights])
    return bytes(lce.convert_keras_model(model))


def images(count: int, seed: int = 1) -> np.ndarray:
    """Seeded inputs for the model: ``count`` NHWC float32 images."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (count, *SHAPE)).astype(np.float32)
