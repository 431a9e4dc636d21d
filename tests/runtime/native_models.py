"""Small Larq/Keras models converted with LCE, each exercising a part of the C engine's op set.

Every builder returns a ``EngineCase``; ``exact`` means the engine must match the LCE interpreter
bit for bit (binary layers and exact float ops only), otherwise to float rounding. Branches of one
model are flattened and concatenated, so one conversion covers many configurations.

LCE 0.16 writes int8 binary-convolution output only next to int8 builtins (which the engine does
not run); its int8 output transform is checked against the reference kernel in bitat_selftest.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


@dataclass(frozen=True)
class EngineCase:
    flatbuffer: bytes
    input_shape: tuple[int, ...]
    exact: bool
    input_dtype: type = np.float32


def _keras():
    import larq as lq
    import tensorflow as tf

    return tf, lq


def _bconv(lq, filters: int, k: int, **kwargs):
    return lq.layers.QuantConv2D(filters, k, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                 kernel_constraint=None, use_bias=False, **kwargs)


def _randomize(model, seed: int) -> None:
    """Random weights everywhere, batch norms with spread-out statistics (negative scales included)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if type(layer).__name__ == "BatchNormalization":
            n = weights[0].shape[0]
            layer.set_weights([rng.uniform(-1.5, 1.5, n), rng.normal(0, 3, n), rng.normal(0, 5, n),
                               rng.uniform(0.5, 4, n)])
        else:
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in weights])


def _convert(model, **kwargs) -> bytes:
    import larq_compute_engine as lce

    return bytes(lce.convert_keras_model(model, **kwargs))


def binary_matrix() -> EngineCase:
    """LceBconv2d over kernel 1/3 (and one 5), stride 1/2, odd (9) and even (8) inputs, valid /
    same-zero / same-one padding, dilation 2, 40 input channels (not a multiple of 32), 24 or 37
    outputs, with a fused ReLU clamp, a fused batch norm, both, or neither."""
    tf, lq = _keras()
    channels = 40
    inp = tf.keras.Input((9, 9, channels), batch_size=1)
    # An exact 9x9 -> 8x8 crop as a float conv whose weights select the top-left pixel (x * 1 + zeros).
    crop = tf.keras.layers.Conv2D(channels, 2, use_bias=False, name="crop")
    even = crop(inp)
    configs = [c for c in itertools.product((9, 8), (1, 3), (1, 2), ("valid", "zero", "one")) if c[1] > 1 or c[3] == "valid"]
    configs += [(8, 5, 2, "one"), (9, 5, 1, "zero")]
    outs = []
    for i, (size, k, stride, pad) in enumerate(configs):
        extra = {"dilation_rate": 2} if (k == 3 and stride == 1 and size == 9) else {}
        conv = _bconv(lq, 24 if i % 2 else 37, k, strides=stride, padding="valid" if pad == "valid" else "same",
                      pad_values=1.0 if pad == "one" else 0.0, activation="relu" if i % 3 == 0 else None,
                      name=f"b{size}_k{k}_s{stride}_{pad}", **extra)
        y = conv(inp if size == 9 else even)
        if i % 4 < 2:
            y = tf.keras.layers.BatchNormalization(name=f"bn{i}")(y)
        outs.append(tf.keras.layers.Flatten()(y))
    model = tf.keras.Model(inp, tf.keras.layers.Concatenate()(outs))
    _randomize(model, 1)
    selector = np.zeros((2, 2, channels, channels), np.float32)
    selector[0, 0] = np.eye(channels)
    crop.set_weights([selector])
    return EngineCase(_convert(model), (1, 9, 9, channels), exact=True)


def binary_chain() -> EngineCase:
    """A binary conv writing bitpacked output (thresholds) into the next one, then max pool -> binary
    conv (LceBMaxPool2d), 35 input channels."""
    tf, lq = _keras()
    inp = tf.keras.Input((10, 10, 35), batch_size=1)
    y = _bconv(lq, 48, 3, padding="same", pad_values=1.0)(inp)
    y = tf.keras.layers.BatchNormalization()(y)
    y = _bconv(lq, 40, 3, padding="same", pad_values=1.0)(y)
    y = tf.keras.layers.BatchNormalization()(y)
    y = tf.keras.layers.MaxPool2D(2)(y)
    y = _bconv(lq, 33, 3, padding="valid")(y)
    model = tf.keras.Model(inp, tf.keras.layers.Flatten()(y))
    _randomize(model, 2)
    return EngineCase(_convert(model), (1, 10, 10, 35), exact=True)


def element_chains() -> EngineCase:
    """Element-wise runs the blob compiler fuses into CHAIN ops: ReActNet's RPReLU (shift, PReLU, shift)
    after a residual ADD, in [0, 1] slopes and general ones, a shift then LceQuantize (packed output);
    rows of 64 channels (several rows per engine block) and of 288 (longer than a 256-float block)."""
    tf, lq = _keras()
    from convert.keras_layers import Elementwise

    rng = np.random.default_rng(6)

    def shift(x, op, channels):
        return Elementwise(op, rng.normal(0, 1, channels).astype(np.float32))(x)

    def rprelu(x, channels, name):
        x = tf.keras.layers.PReLU(shared_axes=[1, 2], name=name)(shift(x, tf.math.subtract, channels))
        return shift(x, tf.math.add, channels)

    inp = tf.keras.Input((4, 4, 288), batch_size=1)
    a = rprelu(tf.keras.layers.Add()([inp, tf.keras.layers.Activation("relu")(inp)]), 288, "general_slopes")
    a = _bconv(lq, 40, 1)(shift(a, tf.math.subtract, 288))
    b = _bconv(lq, 64, 3, padding="same", pad_values=1.0)(inp)
    b = rprelu(tf.keras.layers.Add()([b, tf.keras.layers.Activation("relu")(b)]), 64, "unit_slopes")
    b = _bconv(lq, 32, 3, padding="same", pad_values=1.0)(shift(b, tf.math.subtract, 64))
    model = tf.keras.Model(inp, tf.keras.layers.Concatenate()([tf.keras.layers.Flatten()(a),
                                                               tf.keras.layers.Flatten()(b)]))
    _randomize(model, 6)
    unit = model.get_layer("unit_slopes")
    unit.set_weights([rng.uniform(0, 1, w.shape).astype(np.float32) for w in unit.get_weights()])
    return EngineCase(_convert(model), (1, 4, 4, 288), exact=True)


def bitpacked_output() -> EngineCase:
    """A binary conv whose only consumer is a binarizer, as the model output: bitpacked int32 output."""
    from larq_compute_engine.mlir.python.util import strip_lcedequantize_ops

    tf, lq = _keras()
    inp = tf.keras.Input((7, 7, 70), batch_size=1)
    y = _bconv(lq, 45, 3, strides=2, padding="same", pad_values=1.0)(inp)
    y = tf.keras.layers.BatchNormalization()(y)
    model = tf.keras.Model(inp, lq.quantizers.SteSign()(y))
    _randomize(model, 3)
    return EngineCase(bytes(strip_lcedequantize_ops(_convert(model))), (1, 7, 7, 70), exact=True)


def int8_input() -> EngineCase:
    """Float input quantized to int8 (QUANTIZE), LceQuantize of int8 (the zero point is the sign
    threshold), a same-one binary conv."""
    tf, lq = _keras()
    inp = tf.keras.Input((8, 8, 40), batch_size=1)
    y = _bconv(lq, 24, 3, padding="same", pad_values=1.0)(inp)
    model = tf.keras.Model(inp, tf.keras.layers.BatchNormalization()(y))
    _randomize(model, 4)
    return EngineCase(_convert(model, experimental_default_int8_range=(-3.0, 2.0)), (1, 8, 8, 40), exact=True)


def int8_io() -> EngineCase:
    """int8 model input binarized (LceQuantize of int8) and unpacked to +-1 (LceDequantize)."""
    tf, lq = _keras()
    inp = tf.keras.Input((5, 5, 40), batch_size=1)
    model = tf.keras.Model(inp, lq.quantizers.SteSign()(inp))
    return EngineCase(_convert(model, inference_input_type=tf.int8, inference_output_type=tf.int8,
                              experimental_default_int8_range=(-3.0, 2.0)), (1, 5, 5, 40), exact=True,
                     input_dtype=np.int8)


def float_ops() -> EngineCase:
    """Float builtins: dilated conv + RELU6, depthwise with multiplier 2, binarized input to a float
    depthwise (LceDequantize), MAXIMUM / SUB / MINIMUM / DIV of tensors, LOGISTIC, global max pool
    (REDUCE_MAX), 3x3 and 2x2 (16 channels) average pools, transpose + reshape, zero and +1 pads
    (PAD, PADV2), max pool, PRELU, HARD_SWISH, RELU, global average pool (MEAN), dense, softmax. The converter's own Keras layers keep the
    graph saveable (the fast conversion path)."""
    tf, lq = _keras()
    from convert.keras_layers import Elementwise, HardSwish, Pad2D

    inp = tf.keras.Input((9, 9, 6), batch_size=1)
    a = tf.keras.layers.Conv2D(12, 3, dilation_rate=2, padding="same", activation=tf.nn.relu6)(inp)
    b = tf.keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(inp)
    s = tf.keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(lq.quantizers.SteSign()(
        tf.keras.layers.Conv2D(12, 1)(inp)))
    m = tf.keras.layers.Subtract()([tf.keras.layers.Maximum()([a, b]), a])
    n = tf.keras.layers.Minimum()([b, s])
    squared = tf.keras.layers.Multiply()([n, n])
    d = Elementwise(tf.math.divide)([m, Elementwise(tf.math.add, np.float32(1.0))(squared)])
    d = tf.keras.layers.Activation("sigmoid")(d)
    pooled = tf.keras.layers.GlobalMaxPooling2D()(d)
    flat = tf.keras.layers.Reshape((-1,))(tf.keras.layers.Permute((3, 1, 2))(
        tf.keras.layers.AveragePooling2D(3)(d)))
    e = tf.keras.layers.MaxPool2D(2)(tf.keras.layers.ZeroPadding2D(1)(inp))
    e = HardSwish()(tf.keras.layers.PReLU(shared_axes=[1, 2])(e))
    e = Pad2D((1, 0, 0, 1), 1.0)(e)
    averaged = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.ReLU()(e))
    quads = tf.keras.layers.GlobalMaxPooling2D()(tf.keras.layers.AveragePooling2D(2)(  # the 2x2 fast path
        tf.keras.layers.Conv2D(16, 1)(inp)))
    head = tf.keras.layers.Dense(10)(tf.keras.layers.Concatenate()([pooled, flat, averaged, quads]))
    model = tf.keras.Model(inp, tf.keras.layers.Softmax()(head))
    _randomize(model, 5)
    return EngineCase(_convert(model), (1, 9, 9, 6), exact=False)


def gray_stems() -> EngineCase:
    """Single-channel 3x3 stems (the aarch64 weight-stationary path): same padding + PReLU (fused into
    CONV_2D+PRELU; any slopes, and slopes in [0, 1]), valid + RELU6, same with no activation; output
    widths 10 and 8 (quads and leftover pixels)."""
    tf, _ = _keras()
    inp = tf.keras.Input((7, 10, 1), batch_size=1)
    a = tf.keras.layers.PReLU(shared_axes=[1, 2])(tf.keras.layers.Conv2D(32, 3, padding="same")(inp))
    b = tf.keras.layers.Conv2D(16, 3, activation=tf.nn.relu6)(inp)
    c = tf.keras.layers.Conv2D(8, 3, padding="same")(inp)
    unit = tf.keras.layers.PReLU(shared_axes=[1, 2])  # slopes in [0, 1]: PReLU as max(x, a x)
    d = unit(tf.keras.layers.Conv2D(8, 3, padding="same")(inp))
    flat = [tf.keras.layers.Flatten()(t) for t in (a, b, c, d)]
    model = tf.keras.Model(inp, tf.keras.layers.Concatenate()(flat))
    _randomize(model, 11)
    unit.set_weights([np.random.default_rng(12).uniform(0, 1, w.shape).astype(np.float32) for w in unit.get_weights()])
    return EngineCase(_convert(model), (1, 7, 10, 1), exact=False)


BUILDERS = {f.__name__: f for f in (binary_matrix, binary_chain, element_chains, bitpacked_output, int8_input, int8_io,
                                    float_ops, gray_stems)}
