"""The float32 and int8 (post-training, calibrated) TFLite baselines of the same Keras network.

Binary layers become ordinary float convolutions here (the sign is a SIGN op): that is the point
of the baseline. Both keep float32 input and output so every model takes the same input.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from convert.errors import ConvertError


def convert_fp32(model: tf.keras.Model) -> bytes:
    """The float32 TFLite flatbuffer of ``model``."""
    try:
        return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    except Exception as exc:
        raise ConvertError(f"the TFLite converter failed on the built model ({str(exc).splitlines()[0]})") from exc


def convert_int8(model: tf.keras.Model, calib_nhwc: np.ndarray) -> bytes:
    """Int8 post-training quantization calibrated on ``calib_nhwc`` (N, H, W, C); float32 I/O kept."""
    if len(calib_nhwc) == 0:
        raise ConvertError("the calibration set is empty; int8 quantization needs calibration images")

    def representative() -> Iterator[list[np.ndarray]]:
        for x in calib_nhwc:
            yield [x[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    # Ops without an int8 kernel (the binarizer's SIGN) fall back to float.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return bytes(converter.convert())
    except Exception as exc:
        raise ConvertError(f"int8 quantization failed on the built model ({str(exc).splitlines()[0]})") from exc
