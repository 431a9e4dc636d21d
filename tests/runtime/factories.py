"""Real test inputs built on the spot (shared by tests/runtime and device_tests).

``build_bundle``: a tiny deploy bundle: a Larq binary conv net converted with LCE, its float twin as
fp32/int8 TFLite, a seeded eval set and a valid manifest (TensorFlow is used here only).
``compile_aarch64``: a small C program cross-compiled with Debian's gcc-aarch64-linux-gnu.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SEED = 0
SHAPE = (8, 8, 1)
CLASSES = [f"c{i}" for i in range(4)]


def build_bundle(deploy: Path, samples: int = 24) -> dict:
    """Write model.tflite, model_fp32.tflite, model_int8.tflite, eval.npz, manifest.json into ``deploy``."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import larq
    import larq_compute_engine as lce
    import tensorflow as tf
    import tf_keras as keras

    from bitat_edge.manifest import DeploySection, InputSpec, Manifest

    tf.random.set_seed(SEED)
    rng = np.random.default_rng(SEED)

    def net(binary: bool) -> keras.Model:
        inputs = keras.Input(SHAPE, batch_size=1)
        x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
        x = keras.layers.BatchNormalization()(x)
        if binary:
            x = larq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, use_bias=False,
                                        input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
        else:
            x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(len(CLASSES))(x)
        return keras.Model(inputs, outputs)

    binary_model, float_model = net(True), net(False)
    x = rng.standard_normal((samples, *SHAPE)).astype(np.float32)
    y = np.argmax(float_model.predict(x, verbose=0), axis=1).astype(np.int64)

    deploy.mkdir(parents=True, exist_ok=True)
    (deploy / "model.tflite").write_bytes(lce.convert_keras_model(binary_model))
    converter = tf.lite.TFLiteConverter.from_keras_model(float_model)
    (deploy / "model_fp32.tflite").write_bytes(converter.convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(float_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    (deploy / "model_int8.tflite").write_bytes(converter.convert())
    np.savez(deploy / "eval.npz", x=x, y=y)

    interpreter = lce.testing.Interpreter((deploy / "model.tflite").read_bytes())
    top1 = {"lce": float(np.mean(np.argmax(interpreter.predict(x), axis=1) == y))}
    for kind in ("fp32", "int8"):  # the convert stage's keys and rounding
        preds = tflite_predictions((deploy / f"model_{kind}.tflite").read_bytes(), x)
        top1[f"tflite_{kind}"] = float(np.mean(np.array(preds) == y))
    manifest = Manifest(
        model_name="tiny_w1a1",
        input=InputSpec(shape=[1, *SHAPE], layout="NHWC"),
        classes=CLASSES,
        deploy=DeploySection(input_shape=[1, *SHAPE], top1_is="accuracy", reference_top1={
            kind: round(top1[key], 6) for kind, key in (("lce", "lce"), ("fp32", "tflite_fp32"), ("int8", "tflite_int8"))}),
        producer="tests/runtime/bundle_factory.py",
    )
    manifest.save(deploy / "manifest.json")
    return {"top1": top1, "x": x, "y": y}


def tflite_predictions(model: bytes, x: np.ndarray) -> list[int]:
    """Top-1 class of each image of ``x`` by TensorFlow's TFLite interpreter on this machine."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    predictions = []
    for i in range(len(x)):
        interpreter.set_tensor(inp, x[i : i + 1])
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(out))))
    return predictions


HELLO_C = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    printf("hello from %s argc=%d", sizeof(void *) == 8 ? "64-bit" : "32-bit", argc);
    for (int i = 1; i < argc; i++) printf(" [%s]", argv[i]);
    printf("\n");
    return argc > 1 && strcmp(argv[1], "fail") == 0 ? 7 : 0;
}
"""


def compile_aarch64(root: Path) -> Path:
    """Cross-compile HELLO_C (dynamically linked) into ``root/hello``; skip when no cross compiler."""
    compiler = shutil.which("aarch64-linux-gnu-gcc")
    if compiler is None:
        pytest.skip("aarch64-linux-gnu-gcc is not installed (apt-get install gcc-aarch64-linux-gnu)")
    (root / "hello.c").write_text(HELLO_C)
    subprocess.run([compiler, "-O2", "-o", str(root / "hello"), str(root / "hello.c")], check=True, timeout=120)
    return root / "hello"


_SHARED: dict[str, tuple[Path, dict]] = {}


def shared_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One bundle per pytest process, shared by tests/runtime and device_tests (building takes seconds)."""
    if "bundle" not in _SHARED:
        deploy = tmp_path_factory.mktemp("run") / "deploy"
        _SHARED["bundle"] = (deploy, build_bundle(deploy))
    return _SHARED["bundle"]
