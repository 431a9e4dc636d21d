"""Measure one TFLite model with a Python interpreter: latency per invoke and top-1 on an eval set.

Self-contained on purpose (numpy + an interpreter package, nothing from this project): the ssh and
local transports copy this file to the target and run it there with the target's Python; it writes
a JSON file that the harness pulls back and summarises.

    python remote_measure.py --model m.tflite --backend lce --threads 4 --warmup 5 --runs 50 \
        --windows 3 [--eval eval.npz --eval-samples 1000 --progress 1000] [--mark-invokes 5] --out result.json

``--mark-invokes K`` serves instruction counting under emulation: after the warm-up, K more invokes
(on the first K eval images) each sit between two ``os.getppid()`` calls, followed by one empty pair;
a counter that watches that system call (the QEMU plugin's ``syscall=`` marker) then measures
exactly one ``invoke()`` each, and the empty pair is the cost of the marking itself.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

DEFAULT_DELEGATE = "xnnpack (the TFLite interpreter's default)"
NO_DELEGATE = "none"
"""What ran the model besides the interpreter's own kernels: TFLite interpreters apply their default XNNPACK
delegate (the convert stage's parity report checks the baselines both with and without it); LCE's
interpreter runs without one."""


class Runner(NamedTuple):
    """One loaded model: set the input, invoke, read the output (separately, so an invoke can be marked)."""

    set_input: Callable[[np.ndarray], None]
    invoke: Callable[[], None]
    output: Callable[[], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.set_input(x)
        self.invoke()
        return self.output()


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _lce_runner(model: bytes, threads: int):
    """LCE's interpreter; loaded straight from its extension module so TensorFlow is not imported."""
    spec = importlib.util.find_spec("larq_compute_engine")
    if spec is None or spec.origin is None:
        raise RuntimeError("larq-compute-engine is not installed (pip install larq-compute-engine==0.16.0)")
    libdir = Path(spec.origin).parent / "tflite" / "python"
    candidates = sorted(libdir.glob("interpreter_wrapper_lite*.so"))
    name = "larq_compute_engine.tflite.python.interpreter_wrapper_lite"
    wrapper = sys.modules.get(name)  # one instance per process: its pybind types register only once
    if wrapper is None and candidates:
        ext = importlib.util.spec_from_file_location(name, candidates[0])
        wrapper = importlib.util.module_from_spec(ext)
        ext.loader.exec_module(wrapper)
        sys.modules[name] = wrapper
    if wrapper is not None:
        interpreter = wrapper.LiteInterpreter(model, threads, False, False, False)
    else:
        interpreter = importlib.import_module("larq_compute_engine").testing.Interpreter(model, threads).interpreter
    in_dtype = np.dtype(interpreter.input_types[0])
    in_scale, in_zero = interpreter.input_scales[0], interpreter.input_zero_points[0]
    state: dict[str, np.ndarray] = {}

    def set_input(x: np.ndarray) -> None:
        state["input"] = _to_input(x, in_dtype, in_scale, in_zero)

    def invoke() -> None:  # LCE's Python API sets the input, invokes and copies the output in one call
        state["output"] = interpreter.predict([state["input"]])[0]

    runner = Runner(set_input, invoke, lambda: state["output"])
    return runner, "larq_compute_engine", _package_version("larq-compute-engine"), NO_DELEGATE


def _tflite_runner(model: bytes, threads: int):
    """tf.lite if TensorFlow imports, else tflite_runtime, else ai_edge_litert, else LCE's interpreter."""
    for module_name, attr, dist in (
        ("tensorflow", "lite.Interpreter", "tensorflow"),
        ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
        ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = module
        for part in attr.split("."):
            cls = getattr(cls, part)
        interpreter = cls(model_content=model, num_threads=threads)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        scale, zero = inp["quantization"]

        def set_input(x: np.ndarray, interpreter=interpreter, inp=inp, scale=scale, zero=zero) -> None:
            interpreter.set_tensor(inp["index"], _to_input(x, np.dtype(inp["dtype"]), scale, zero))

        def output(interpreter=interpreter, out=out) -> np.ndarray:
            return interpreter.get_tensor(out["index"])

        return Runner(set_input, interpreter.invoke, output), module_name.split(".")[0], _package_version(dist), DEFAULT_DELEGATE
    return _lce_runner(model, threads)


def _to_input(x: np.ndarray, dtype: np.dtype, scale, zero) -> np.ndarray:
    """Float input as the model expects it: quantized with (scale, zero point) for integer inputs."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        scale = float(scale[0] if isinstance(scale, (list, tuple)) else scale) or 1.0
        zero = int(zero[0] if isinstance(zero, (list, tuple)) else (zero or 0))
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _mark_invokes(run: Runner, inputs: np.ndarray) -> None:
    """Each input's invoke between two getppid() system calls, then one empty pair (see the module doc)."""
    for i in range(len(inputs)):
        run.set_input(inputs[i : i + 1].astype(np.float32))
        os.getppid()
        run.invoke()
        os.getppid()
    os.getppid()
    os.getppid()


def measure(model_path: str, backend: str, threads: int, warmup: int, runs: int, windows: int,
            eval_path: str | None = None, eval_samples: int | None = None,
            input_shape: list[int] | None = None, mark_invokes: int = 0, progress: int = 0) -> dict:
    """Time ``warmup`` + ``windows`` × ``runs`` invokes of one input; top-1 and predictions over the eval
    set if given (a 'progress: i/n images' line on stderr every ``progress`` images); ``mark_invokes``
    marked invokes after the warm-up (see the module docstring).

    The timed input is the first eval sample, or seeded noise of ``input_shape`` without an eval set.
    """
    model = Path(model_path).read_bytes()
    make = _lce_runner if backend == "lce" else _tflite_runner
    run, backend_name, version, delegate = make(model, threads)
    x = y = None
    if eval_path:
        with np.load(eval_path, allow_pickle=False) as data:
            x = data["x"]
            y = data["y"] if "y" in data else None  # a bundle converted without labels
        if eval_samples:
            x = x[:eval_samples]
            y = None if y is None else y[:eval_samples]
        sample = x[:1].astype(np.float32)
    else:
        if not input_shape:
            raise ValueError("without --eval, --input-shape is needed (e.g. 1,28,28,1)")
        sample = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    for _ in range(warmup):
        run(sample)
    if mark_invokes:
        _mark_invokes(run, x[:mark_invokes] if x is not None else np.repeat(sample, mark_invokes, axis=0))
    timings = []
    for _ in range(windows):
        window = []
        for _ in range(runs):
            start = time.perf_counter_ns()
            run(sample)
            window.append((time.perf_counter_ns() - start) / 1000.0)
        timings.append(window)
    accuracy = predictions = None
    if x is not None:
        predictions = []
        for i in range(len(x)):
            predictions.append(int(np.argmax(run(x[i : i + 1].astype(np.float32)).reshape(-1))))
            if progress and (i + 1) % progress == 0:
                print(f"progress: {i + 1}/{len(x)} images", file=sys.stderr, flush=True)
    if y is not None:
        correct = int((np.asarray(predictions) == np.asarray(y)).sum())
        accuracy = {"correct": correct, "total": int(len(x)), "top1": correct / max(len(x), 1)}
    return {
        "backend": backend_name,
        "backend_version": version,
        "delegate": delegate,
        "python": sys.version.split()[0],
        "timings_us": timings,
        "accuracy": accuracy,
        "predictions": predictions,  # top-1 class of each eval image, for agreement between engines
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--backend", choices=("lce", "tflite"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--eval")
    parser.add_argument("--eval-samples", type=int)
    parser.add_argument("--input-shape", type=lambda text: [int(d) for d in text.split(",")])
    parser.add_argument("--mark-invokes", type=int, default=0)
    parser.add_argument("--progress", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = measure(args.model, args.backend, args.threads, args.warmup, args.runs, args.windows,
                     args.eval, args.eval_samples, args.input_shape, args.mark_invokes, args.progress)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
