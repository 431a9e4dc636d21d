"""tf-keras layers for integer grids (``convert.qdq``): a quantize point computed exactly in float, the
same point and any calibrated tensor as TensorFlow ``FakeQuant`` (what the TFLite converter turns into
int8 tensors with exactly these parameters), and a conv whose kernel is fake-quantized onto its grid.

TensorFlow's FakeQuant maps ``[min, max]`` onto 256 levels (narrow range: 255) and nudges ``min`` and
``max`` so that 0 is a level; for a range ``[(q_min - z) s, (q_max - z) s]`` the nudge is the identity
(up to float rounding of ``s``), so TFLite's scale is ``s`` and its zero point ``z``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from convert.qdq import WEIGHT_CODE_MAX, QuantizePoint

INT16_CODE_MAX = 32767


class QuantizeFloat(tf.keras.layers.Layer):
    """``s * (clip(round(x / s) + z, q_min, q_max) - z)`` in float ops (round half to even, as ONNX)."""

    def __init__(self, point: QuantizePoint, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale, self.zero = float(point.scale), float(point.zero_point)
        self.q_min, self.q_max = float(point.q_min), float(point.q_max)

    def call(self, inputs):
        codes = tf.clip_by_value(tf.round(inputs / self.scale) + self.zero, self.q_min, self.q_max)
        return (codes - self.zero) * self.scale


class FakeQuant(tf.keras.layers.Layer):
    """``tf.quantization.fake_quant_with_min_max_args`` over ``[low, high]`` (widened to contain 0): 8 bits
    (256 levels, an int8 tensor), or 16 bits symmetric (``[-m, m]``, m = max(|low|, |high|), 65,535 levels
    with 0 in the middle: TFLite's int16 activations, zero point 0)."""

    def __init__(self, low: float, high: float, bits: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        if bits not in (8, 16):
            raise ValueError(f"FakeQuant: bits must be 8 or 16, got {bits}")
        self.low, self.high, self.bits = min(float(low), 0.0), max(float(high), 0.0), bits
        if bits == 16:
            self.high = max(-self.low, self.high)
            self.low = -self.high
        if self.high - self.low <= 0:
            self.high = self.low + 1e-6

    def call(self, inputs):
        return tf.quantization.fake_quant_with_min_max_args(inputs, min=self.low, max=self.high, num_bits=self.bits,
                                                            narrow_range=self.bits == 16)


def int16_grid_of(point: QuantizePoint) -> tuple[float, float]:
    """The symmetric int16 range whose step is ``point.scale``: a 16-bit ``FakeQuant`` of it rounds onto the
    point's grid, and every level ``(q - z) s`` of an int8 point (``|q - z| <= 255``) is an int16 code."""
    limit = INT16_CODE_MAX * point.scale
    return -limit, limit


class PReLU16(tf.keras.layers.Layer):
    """``relu(x) - slope * relu(-x)`` with the slope through a symmetric 16-bit ``FakeQuant`` (rounded to
    ``max |slope| / 32767``), for a 16x8 model: Keras' PReLU on an int16 input makes the converter pair it
    with an int8 slope and fail. The converter keeps this form as float ``RELU``, ``NEG``, ``MUL`` and
    ``SUB`` (not fused into ``PRELU``) between ``DEQUANTIZE`` and ``QUANTIZE``."""

    def __init__(self, slope: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.slope = np.asarray(slope, dtype=np.float32)
        self.limit = max(float(np.abs(self.slope).max()), 1e-6)

    def call(self, inputs):
        slope = tf.quantization.fake_quant_with_min_max_args(tf.constant(self.slope), min=-self.limit, max=self.limit,
                                                             num_bits=16, narrow_range=True)
        return tf.nn.relu(inputs) - slope * tf.nn.relu(-inputs)


class GridConv2D(tf.keras.layers.Layer):
    """A conv (or depthwise conv) whose kernel is fake-quantized to ``scale[o] * codes`` with codes in
    [-127, 127] (narrow range, per output channel; one scale for a depthwise kernel), plus the bias.

    ``kernel`` is HWIO (depthwise: H, W, C, 1); ``padding`` is ``"same"`` or ``"valid"``."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None, scale: np.ndarray, *, strides: tuple[int, int],
                 padding: str, dilations: tuple[int, int], depthwise: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel_value = np.asarray(kernel, dtype=np.float32)
        self.bias_value = None if bias is None else np.asarray(bias, dtype=np.float32)
        self.limit = WEIGHT_CODE_MAX * np.asarray(scale, dtype=np.float32)
        self.strides, self.padding, self.dilations, self.depthwise = strides, padding.upper(), dilations, depthwise

    def build(self, input_shape) -> None:
        constant = tf.keras.initializers.Constant
        self.kernel = self.add_weight(name="kernel", shape=self.kernel_value.shape, trainable=False,
                                      initializer=constant(self.kernel_value))
        limit = self.limit[:1] if self.depthwise else self.limit
        self.low = self.add_weight(name="low", shape=limit.shape, trainable=False, initializer=constant(-limit))
        self.high = self.add_weight(name="high", shape=limit.shape, trainable=False, initializer=constant(limit))
        self.bias = None if self.bias_value is None else self.add_weight(
            name="bias", shape=self.bias_value.shape, trainable=False, initializer=constant(self.bias_value))

    def call(self, inputs):
        if self.depthwise:
            kernel = tf.quantization.fake_quant_with_min_max_vars(self.kernel, self.low[0], self.high[0],
                                                                  num_bits=8, narrow_range=True)
            out = tf.nn.depthwise_conv2d(inputs, kernel, (1, *self.strides, 1), self.padding, dilations=self.dilations)
        else:
            kernel = tf.quantization.fake_quant_with_min_max_vars_per_channel(self.kernel, self.low, self.high,
                                                                              num_bits=8, narrow_range=True)
            out = tf.nn.conv2d(inputs, kernel, self.strides, self.padding, dilations=self.dilations)
        return out if self.bias is None else out + self.bias
