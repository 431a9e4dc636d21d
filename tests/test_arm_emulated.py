"""benchmarks/arm_emulated.py: the fully-integer check of the int8 baseline, on real converted models."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.arm_emulated import Row, _finished, int8_op_histogram
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


def _session(root: Path, name: str, total: int, counted: bool, predictions: bool = True) -> None:
    """A finished session of an fp32 model over ``total`` images, as bench.py writes it."""
    from bitat_edge.bench_record import Accuracy, BenchSession, Instructions, Measurement

    record = BenchSession(
        date="2026-01-01T00:00:00+00:00", emulated=True,
        device={"name": "qemu-aarch64", "description": "d", "arch": "aarch64", "cpu": "cortex-a72", "transport": "qemu"},
        facts={"machine": "aarch64"}, protocol={"threads": 1, "warmup": 1, "runs": 1, "windows": 1},
        bundle="b", model_name="m", harness={"bitat_edge": "0", "python": "3", "command": ["bench.py"]},
        measurements=[Measurement(
            model="fp32", file="model_fp32.tflite", model_sha256="ab" * 32, model_bytes=10,
            engine="tflite-interpreter", engine_version="v", backend="ai_edge_litert",
            instructions=Instructions(per_inference=10, cpu="cortex-a72", method="m") if counted else None,
            accuracy=Accuracy(correct=total // 2, total=total, top1=0.5))])
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(record.to_dict()))
    if predictions:
        np.save(root / name / "predictions_fp32.npy", np.zeros(total, dtype=np.int64))


def test_finished_sessions_are_reused_only_when_they_cover_the_row(tmp_path: Path):
    _session(tmp_path, "qemu-aarch64-20260101T000000Z", 1000, counted=True)
    _session(tmp_path, "qemu-aarch64-20260102T000000Z", 20, counted=True)
    _session(tmp_path, "qemu-aarch64-20260103T000000Z", 250, counted=True, predictions=False)
    _session(tmp_path, "qemu-aarch64-20260104T000000Z", 5000, counted=False)
    row = Row("r", SimpleNamespace(models={"fp32": SimpleNamespace(sha256="ab" * 32)}), "fp32",
              "tflite-interpreter", "tflite-interpreter", True)

    def found(images: int, counted: bool = True) -> str | None:
        hit = _finished(tmp_path, "qemu-aarch64", row, "tflite-interpreter", images, counted)
        return None if hit is None else hit[0].name[-16:-8]

    assert found(20) == "20260102"  # the newest that covers the images
    assert found(250) == "20260101"  # more images than asked; the one without predictions is skipped
    assert found(2000) is None
    assert found(2000, counted=False) == "20260104"  # accuracy only: the uncounted session serves
    assert _finished(tmp_path, "qemu-aarch64", row, "native", 20, True) is None
