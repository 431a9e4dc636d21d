"""Run the same inputs through ONNX Runtime (NCHW), the LCE interpreter and TFLite (NHWC)."""

from __future__ import annotations

import os

import larq_compute_engine as lce
import numpy as np
import onnxruntime as ort
import tensorflow as tf


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=np.float32)


def run_onnx(path: str | os.PathLike[str], x_nchw: np.ndarray) -> np.ndarray:
    """Logits from ONNX Runtime (CPU), one image at a time (the exported batch is 1)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None].astype(np.float32)})[0] for x in x_nchw])


def run_lce(flatbuffer: bytes, x_nhwc: np.ndarray) -> np.ndarray:
    """Logits from the LCE interpreter (runs LCE custom ops and builtins)."""
    interpreter = lce.testing.Interpreter(flatbuffer, num_threads=1)
    out = interpreter.predict(np.ascontiguousarray(x_nhwc, dtype=np.float32))
    return np.asarray(out, dtype=np.float32).reshape(len(x_nhwc), -1)


def run_tflite(flatbuffer: bytes, x_nhwc: np.ndarray) -> np.ndarray:
    """Logits from the stock TFLite interpreter (float32 in and out)."""
    interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    results = []
    for x in x_nhwc:
        interpreter.set_tensor(inp, x[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out).copy())
    return np.concatenate(results).reshape(len(x_nhwc), -1)
