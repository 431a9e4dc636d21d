"""benchmarks/arm_emulated.py: the fully-integer check of the int8 baseline, on real converted models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.arm_emulated import int8_op_histogram
from runtime.errors import BenchError


def _int8_model(path: Path, fully_integer: bool) -> Path:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1), batch_size=1), keras.layers.Conv2D(4, 3), keras.layers.ReLU(),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).standard_normal((8, 8, 8, 1)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fully_integer:  # calibrated activations: every op int8, float only at the QUANTIZE/DEQUANTIZE ends
        converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    path.write_bytes(converter.convert())
    return path


def test_fully_integer_model_passes_with_its_op_histogram(tmp_path: Path):
    histogram = int8_op_histogram(_int8_model(tmp_path / "int8.tflite", fully_integer=True))
    assert histogram["QUANTIZE"] == 1 and histogram["DEQUANTIZE"] == 1 and histogram["CONV_2D"] == 1


def test_weight_only_quantized_model_is_refused(tmp_path: Path):
    # without calibration only the weights are int8: the ops compute in float, no fair int8 baseline
    with pytest.raises(BenchError, match="not fully int8 between QUANTIZE and DEQUANTIZE"):
        int8_op_histogram(_int8_model(tmp_path / "hybrid.tflite", fully_integer=False))
