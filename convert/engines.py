"""Run the same inputs through ONNX Runtime (NCHW), the LCE interpreter and TFLite (NHWC).

The engines are imported when first run, so loading and checking a model never imports TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from bitat_edge.manifest import ModelKind

if TYPE_CHECKING:
    import onnxruntime as ort


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)), dtype=np.float32)


def onnx_session(model: str | os.PathLike[str] | bytes) -> ort.InferenceSession:
    """An ONNX Runtime CPU session (one thread) for a model file or a serialized model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # no warnings (e.g. brevitas lists its initializers as graph inputs)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(model: str | os.PathLike[str] | bytes, x_nchw: np.ndarray) -> np.ndarray:
    """Logits from ONNX Runtime for a model file or a serialized model, one image at a time (the
    exported batch is 1)."""
    session = onnx_session(model)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[None].astype(np.float32)})[0] for x in x_nchw])


def run_lce(flatbuffer: bytes, x_nhwc: np.ndarray) -> np.ndarray:
    """Logits from the LCE interpreter (LCE custom ops and builtins; no XNNPACK, as the runtime runs it)."""
    import larq_compute_engine as lce

    interpreter = lce.testing.Interpreter(flatbuffer, num_threads=1)
    out = interpreter.predict(np.ascontiguousarray(x_nhwc, dtype=np.float32))
    return np.asarray(out, dtype=np.float32).reshape(len(x_nhwc), -1)


def run_tflite(flatbuffer: bytes, x_nhwc: np.ndarray, default_delegates: bool = True) -> np.ndarray:
    """Logits from the stock TFLite interpreter (float32 in and out): with its default delegates (XNNPACK),
    as the runtime's TFLite interpreters run the baselines, or with the builtin kernels alone."""
    import tensorflow as tf

    resolver = tf.lite.experimental.OpResolverType
    interpreter = tf.lite.Interpreter(
        model_content=flatbuffer, num_threads=1,
        experimental_op_resolver_type=resolver.AUTO if default_delegates else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    results = []
    for x in x_nhwc:
        interpreter.set_tensor(inp, x[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out).copy())
    return np.concatenate(results).reshape(len(x_nhwc), -1)


def _tflite_builtin_kernels(flatbuffer: bytes, x_nhwc: np.ndarray) -> np.ndarray:
    return run_tflite(flatbuffer, x_nhwc, default_delegates=False)


ENGINES: dict[ModelKind, tuple[str, Callable[[bytes, np.ndarray], np.ndarray]]] = {
    "lce": ("lce", run_lce), "fp32": ("tflite_fp32", run_tflite), "int8": ("tflite_int8", run_tflite)}
"""Per bundle model kind: the engine's name in reports and the function that runs its flatbuffer (NHWC) the way
the runtime runs it (the TFLite baselines with the interpreter's default XNNPACK delegate)."""

WITHOUT_DELEGATE: dict[ModelKind, tuple[str, Callable[[bytes, np.ndarray], np.ndarray]]] = {
    "fp32": ("tflite_fp32_no_delegate", _tflite_builtin_kernels),
    "int8": ("tflite_int8_no_delegate", _tflite_builtin_kernels)}
"""The TFLite baselines once more with TFLite's builtin kernels alone, reported beside ``ENGINES``: XNNPACK and
the builtin kernels may differ on some graphs."""
