"""The convert pipeline: ONNX + manifest (+ eval/calibration sets) -> a verified deploy bundle.

One function, ``convert``, runs five steps and times each: load the inputs -> convert the three
flatbuffers (LCE, fp32 and int8 TFLite) -> verify parity on every engine -> report -> write the
bundle atomically. ``bitat-edge convert run`` / ``onnx`` and ``benchmarks/convert_time.py`` all call
it, so the benchmark times exactly what users run.
"""

from __future__ import annotations

import contextlib
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bitat_edge import manifest as mf
from bitat_edge.layout import RunDir
from convert import report
from convert.bundle import deploy_manifest, write_bundle
from convert.engines import ENGINES, nchw_to_nhwc, run_onnx
from convert.errors import ConvertError
from convert.int8_qat import convert_int8_qat, grid_check
from convert.keras_builder import BuiltModel, build_keras_model
from convert.lce import convert_lce
from convert.onnx_graph import Graph, load_graph
from convert.tflite import convert_fp32, convert_int8

RANDOM_EVAL_IMAGES = 64
CALIB_FROM_EVAL = 200
CONVERSION_STAGES = ("load", "build_keras", "lce", "fp32", "int8")


@dataclass(frozen=True)
class ConvertRequest:
    """What to convert and where the bundle goes.

    Without ``eval_npz`` parity runs on ``RANDOM_EVAL_IMAGES`` random inputs; without ``calib_npz``
    int8 calibration uses the first ``CALIB_FROM_EVAL`` eval images.
    """

    onnx: Path
    manifest: Path
    out: Path
    eval_npz: Path | None = None
    calib_npz: Path | None = None
    target: str = "arm"  # an LCE target (convert.cli.TARGETS)
    seed: int = 0

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike[str], target: str = "arm",
                out: str | os.PathLike[str] | None = None) -> ConvertRequest:
        """Convert an exported training run into ``out`` (default: the run's own deploy directory)."""
        run = RunDir.at(run_dir)
        missing = [path.name for path in run.exported if not path.is_file()]
        if missing:
            raise ConvertError(f"{run.root}: not an exported run (missing {', '.join(missing)}); "
                               "train and export it first (make train)")
        return cls(run.onnx, run.manifest, Path(out) if out is not None else run.deploy.root, run.eval, run.calib,
                   target)


@dataclass
class Inputs:
    """Step 1's result: the checked manifest, graph and image sets (NCHW float32)."""

    manifest: mf.Manifest
    graph: Graph
    x_eval: np.ndarray
    x_calib: np.ndarray
    labels: np.ndarray | None = None
    torch_logits: np.ndarray | None = None


@dataclass
class Flatbuffers:
    """Step 2's result: the Keras model and the three flatbuffers by bundle model kind."""

    built: BuiltModel
    models: dict[mf.ModelKind, bytes]


@dataclass
class ConvertResult:
    """What ``convert`` did: the report (``report.json``), seconds per stage and the bundle path.

    ``seconds`` adds the report and write stages to the report's own ``timing_s`` (taken before the
    bundle was written); in both, ``total`` is the sum of the stages listed.
    """

    report: dict[str, Any]
    seconds: dict[str, float]
    bundle: Path


@dataclass
class StageTimer:
    """Wall-clock seconds per pipeline stage, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start

    def summary(self) -> dict[str, float]:
        """The stages so far, ``conversion_total`` (up to the three flatbuffers) and ``total``."""
        conversion = sum(v for k, v in self.seconds.items() if k in CONVERSION_STAGES)
        return {**self.seconds, "conversion_total": conversion, "total": sum(self.seconds.values())}


def _load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            if "x" not in data:
                raise ConvertError(f"{path}: the {what} file lacks the array 'x' (float32 NCHW images)")
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ConvertError(f"{path}: {what} file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ConvertError(f"{path}: not a readable .npz {what} file ({exc or type(exc).__name__})") from None


def _images(x: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> np.ndarray:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape[1:]) or x.dtype.kind not in "fiu":
        raise ConvertError(f"{path}: {what} images are {x.dtype} of shape {tuple(x.shape)}, the model takes "
                           f"numbers of shape [N, {', '.join(map(str, shape[1:]))}] (NCHW)")
    return x.astype(np.float32)


def _eval_set(request: ConvertRequest, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None,
                                                                          np.ndarray | None]:
    """Eval images (NCHW), their labels and PyTorch logits when the eval set has them."""
    path = request.eval_npz
    if path is None:
        rng = np.random.default_rng(request.seed)
        return rng.standard_normal((RANDOM_EVAL_IMAGES, *shape[1:]), dtype=np.float32), None, None
    data = _load_npz(path, "eval")
    x = _images(data["x"], shape, path, "eval")
    labels, logits = data.get("y"), data.get("torch_logits")
    if labels is not None and (labels.shape != (len(x),) or labels.dtype.kind not in "fiu"):
        raise ConvertError(f"{path}: y is {labels.dtype} of shape {labels.shape}, expected ({len(x)},) labels")
    if logits is not None and (logits.ndim != 2 or len(logits) != len(x) or logits.dtype.kind not in "fiu"):
        raise ConvertError(f"{path}: torch_logits is {logits.dtype} of shape {logits.shape}, expected "
                           f"({len(x)}, classes) logits")
    return (x, None if labels is None else labels.astype(np.int64),
            None if logits is None else logits.astype(np.float32))


def load_inputs(request: ConvertRequest) -> Inputs:
    """Step 1: read and check the manifest, the ONNX graph and the eval / calibration sets."""
    manifest = mf.load(request.manifest)
    graph = load_graph(request.onnx)
    if manifest.input.layout != "NCHW" or tuple(manifest.input.shape) != graph.input_shape:
        raise ConvertError(f"{request.manifest}: input.shape {manifest.input.shape} ({manifest.input.layout}) does "
                           f"not match the ONNX input {list(graph.input_shape)} (NCHW)")
    x_eval, labels, torch_logits = _eval_set(request, graph.input_shape)
    if request.calib_npz is None:
        x_calib = x_eval[:CALIB_FROM_EVAL]
    else:
        x_calib = _images(_load_npz(request.calib_npz, "calibration")["x"], graph.input_shape, request.calib_npz,
                          "calibration")
    return Inputs(manifest, graph, x_eval, x_calib, labels, torch_logits)


def convert_flatbuffers(graph: Graph, x_calib: np.ndarray, target: str, timer: StageTimer) -> Flatbuffers:
    """Step 2: the Keras model, then the LCE flatbuffer and the fp32 / int8 TFLite baselines."""
    with timer.stage("build_keras"):
        built = build_keras_model(graph)
    with timer.stage("lce"):
        lce = convert_lce(built.model, target=target)
    with timer.stage("fp32"):
        fp32 = convert_fp32(built.model)
    with timer.stage("int8"):  # a graph with integer grids keeps them: quantization-aware int8
        calib = nchw_to_nhwc(x_calib)
        int8 = convert_int8_qat(graph, calib) if graph.has_qdq else convert_int8(built.model, calib)
    return Flatbuffers(built, {"lce": lce, "fp32": fp32, "int8": int8})


@contextlib.contextmanager
def _engine_errors(engine: str, model: object) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # the interpreters raise RuntimeError / their own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConvertError(f"{engine} cannot run {model} ({first})") from exc


def verify_parity(onnx_path: Path, inputs: Inputs, flatbuffers: Flatbuffers) -> dict[str, Any]:
    """Step 3: run the eval images through ONNX Runtime and every flatbuffer; compare with the reference
    (the PyTorch logits when the eval set has them, else ONNX Runtime)."""
    x_nhwc = nchw_to_nhwc(inputs.x_eval)
    outputs: dict[str, np.ndarray] = {}
    if inputs.torch_logits is not None:
        outputs["pytorch"] = inputs.torch_logits
    with _engine_errors("onnxruntime", onnx_path):
        outputs["onnxruntime"] = run_onnx(onnx_path, inputs.x_eval)
    for kind, (engine, run) in ENGINES.items():
        with _engine_errors(engine, "the converted model"):
            outputs[engine] = run(flatbuffers.models[kind], x_nhwc)
    return report.parity(outputs, "pytorch" if "pytorch" in outputs else "onnxruntime", inputs.labels)


def convert(request: ConvertRequest) -> ConvertResult:
    """Convert and verify one model and write its bundle to ``request.out``; every stage is timed."""
    timer = StageTimer()
    with timer.stage("load"):
        inputs = load_inputs(request)
    flatbuffers = convert_flatbuffers(inputs.graph, inputs.x_calib, request.target, timer)
    with timer.stage("parity"):
        parity = verify_parity(request.onnx, inputs, flatbuffers)
    timing_s = timer.summary()
    with timer.stage("report"):
        result = report.assemble(
            model_name=inputs.manifest.model_name, source=request.onnx, target=request.target,
            input_nchw=inputs.graph.input_shape, onnx_ops=inputs.graph.op_histogram(),
            models={ENGINES[kind][0]: fb for kind, fb in flatbuffers.models.items()},
            layers=flatbuffers.built.layers, parity=parity, calibration_images=len(inputs.x_calib), timing_s=timing_s)
        if inputs.graph.weight_grids:
            result["int8_grids"] = grid_check(inputs.graph, flatbuffers.models["int8"])
        manifest = deploy_manifest(inputs.manifest, inputs.graph.input_shape, parity, flatbuffers.models,
                                   flatbuffers.built.layers)
    with timer.stage("write"):
        eval_arrays = {"x": nchw_to_nhwc(inputs.x_eval)} | ({} if inputs.labels is None else {"y": inputs.labels})
        write_bundle(request.out, manifest, flatbuffers.models, eval_arrays, result)
    return ConvertResult(result, timer.summary(), request.out)
