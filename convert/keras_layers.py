"""Small tf-keras layers for the ONNX ops that have no one-to-one Keras layer.

Each holds its constants as NumPy arrays already in NHWC broadcast order; ``call`` is plain
TensorFlow so that TFLite and LCE see ordinary ops (Mul/Add/PadV2/...) they know how to fuse.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf


class Elementwise(tf.keras.layers.Layer):
    """``fn(x, c)`` with a constant ``c`` (``fn(c, x)`` when ``reverse``), or ``fn(x, y)`` for two inputs."""

    def __init__(self, fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], const: np.ndarray | None = None,
                 reverse: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fn = fn
        self.const = None if const is None else np.asarray(const, dtype=np.float32)
        self.reverse = reverse

    def call(self, inputs):
        if self.const is None:
            return self.fn(inputs[0], inputs[1])
        c = tf.constant(self.const)
        return self.fn(c, inputs) if self.reverse else self.fn(inputs, c)


class Affine(tf.keras.layers.Layer):
    """``x * scale + shift`` per channel (inference BatchNormalization); LCE fuses it into a bconv."""

    def __init__(self, scale: np.ndarray, shift: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.shift = np.asarray(shift, dtype=np.float32)

    def call(self, inputs):
        return inputs * tf.constant(self.scale) + tf.constant(self.shift)


class Pad2D(tf.keras.layers.Layer):
    """Padding of an NHWC tensor's H and W by ((top, bottom), (left, right)): with ``value`` (``mode``
    ``CONSTANT``, TFLite PADV2) or with the mirror image of the border (``SYMMETRIC``, MIRROR_PAD)."""

    def __init__(self, pads: tuple[int, int, int, int], value: float, mode: str = "CONSTANT", **kwargs) -> None:
        super().__init__(**kwargs)
        self.pads = tuple(int(p) for p in pads)
        self.value = float(value)
        self.mode = mode

    def call(self, inputs):
        top, bottom, left, right = self.pads
        paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]
        if self.mode == "CONSTANT":
            return tf.pad(inputs, paddings, constant_values=self.value)
        return tf.pad(inputs, paddings, mode=self.mode)


class GroupedConv2D(tf.keras.layers.Layer):
    """A grouped convolution as one ``conv2d`` per group on its slice of the channels, concatenated: TFLite
    ``SPLIT``, ``CONV_2D`` per group, ``CONCATENATION`` (no engine needs a grouped ``CONV_2D`` kernel).
    ``kernel`` is HWIO with I = input channels per group."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None, groups: int, strides: tuple[int, int],
                 padding: str, dilations: tuple[int, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernels = np.split(np.asarray(kernel, dtype=np.float32), groups, axis=-1)
        self.biases = [None] * groups if bias is None else np.split(np.asarray(bias, dtype=np.float32), groups)
        self.groups, self.strides, self.padding, self.dilations = groups, strides, padding.upper(), dilations

    def call(self, inputs):
        outs = []
        for x, kernel, bias in zip(tf.split(inputs, self.groups, axis=-1), self.kernels, self.biases, strict=True):
            y = tf.nn.conv2d(x, tf.constant(kernel), (1, *self.strides, 1), self.padding, dilations=self.dilations)
            outs.append(y if bias is None else y + tf.constant(bias))
        return tf.concat(outs, axis=-1)


class Clip(tf.keras.layers.Layer):
    """``clip(x, low, high)``."""

    def __init__(self, low: float, high: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, inputs):
        return tf.clip_by_value(inputs, self.low, self.high)


class HardSigmoid(tf.keras.layers.Layer):
    """ONNX HardSigmoid: ``clip(alpha * x + beta, 0, 1)``."""

    def __init__(self, alpha: float, beta: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha, self.beta = float(alpha), float(beta)

    def call(self, inputs):
        return tf.clip_by_value(self.alpha * inputs + self.beta, 0.0, 1.0)


class HardSwish(tf.keras.layers.Layer):
    """ONNX HardSwish: ``x * relu6(x + 3) / 6`` (the form TFLite turns into HARD_SWISH)."""

    def call(self, inputs):
        return inputs * tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


class AddConstantUnfused(tf.keras.layers.Layer):
    """``x + c`` for a constant ``c`` of the shape of one NHWC sample, written as ``ADD_N``.

    LCE fuses any ``Add``/``Sub`` of a constant that follows an ``LceBconv2d`` into its per-channel
    ``post_activation_bias`` without checking the shape (``optimize_patterns_common.td``: "TODO: Check
    shapes before fusing"); a per-position constant then fails in the kernel's Prepare. ``ADD_N``
    is not fused.
    """

    def __init__(self, const: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.const = np.asarray(const, dtype=np.float32)[None]

    def call(self, inputs):
        return tf.math.add_n([inputs, tf.constant(self.const)])
