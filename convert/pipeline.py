"""The convert pipeline: ONNX + manifest (+ eval/calibration sets) -> a verified deploy bundle.

One function, ``convert``, runs five steps and times each: load the inputs -> convert the three
flatbuffers (LCE, fp32 and integer TFLite; ``int8_form`` decides which integer form) -> verify parity on
every engine -> report -> write the bundle atomically. ``bitat-edge convert run`` / ``onnx`` and
``benchmarks/convert_time.py`` all call it, so the benchmark times exactly what users run.

Everything a user can get wrong (the output directory, the manifest, the ONNX graph and its op set,
the eval and calibration sets, the class count) is checked before TensorFlow is imported, and what
TensorFlow and LCE print from C++ is kept off the terminal (``convert.quiet``). A
conversion that misses its parity gate (``convert.gate``) writes no bundle; its report goes to
``BundleDir.rejected`` for inspection.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bitat_edge import manifest as mf
from bitat_edge.arrays import read_npz
from bitat_edge.layout import RunDir
from convert import report, sign_zero
from convert.blob import BlobError, CompiledBlob, compile_blob
from convert.bundle import check_outputs, deploy_manifest, discard_rejected, write_bundle, write_rejected
from convert.engines import ENGINES, WITHOUT_DELEGATE, nchw_to_nhwc, run_onnx
from convert.errors import ConvertError, ParityGateError
from convert.gate import ParityGate
from convert.lowering import handler_for
from convert.onnx_graph import Graph, load_graph
from convert.quiet import quiet

if TYPE_CHECKING:
    from convert.keras_builder import BuiltModel

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
    gate: ParityGate = field(default_factory=ParityGate)

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike[str], target: str = "arm",
                out: str | os.PathLike[str] | None = None, gate: ParityGate | None = None) -> ConvertRequest:
        """Convert an exported training run into ``out`` (default: the run's own deploy directory)."""
        run = RunDir.at(run_dir)
        missing = [path.name for path in run.exported if not path.is_file()]
        if missing:
            raise ConvertError(f"{run.root}: not an exported run (missing {', '.join(missing)}); "
                               "train and export it first (make train)")
        return cls(run.onnx, run.manifest, Path(out) if out is not None else run.deploy.root, run.eval, run.calib,
                   target, gate=gate or ParityGate())

    @property
    def inputs(self) -> tuple[Path | None, ...]:
        return (self.onnx, self.manifest, self.eval_npz, self.calib_npz)


@dataclass
class Inputs:
    """Step 1's result: the checked manifest, graph and image sets (NCHW float32)."""

    manifest: mf.Manifest
    graph: Graph
    x_eval: np.ndarray
    x_calib: np.ndarray
    labels: np.ndarray | None = None
    torch_logits: np.ndarray | None = None


GRID_INT8_FORM: mf.IntegerForm = "int16x8"
"""The integer form of the ``int8`` model of a graph with integer grids (``convert.int8_qat``): grids exact and
~99.6-99.99 % top-1 agreement with PyTorch on UniQ W2A2 / QAF, where the pure int8 form agrees on ~98 %
(results/int8_agreement.json). A graph without grids gets post-training int8 (``convert.tflite.convert_int8``)."""


def int8_form(graph: Graph) -> mf.IntegerForm:
    """The integer form of ``graph``'s ``int8`` model: the one place that decides it."""
    return GRID_INT8_FORM if graph.has_qdq else "int8"


@dataclass
class Flatbuffers:
    """Step 2's result: the Keras model, the three flatbuffers by bundle model kind and the integer form the
    ``int8`` one holds."""

    built: BuiltModel
    models: dict[mf.ModelKind, bytes]
    int8_form: mf.IntegerForm


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


def _finite(x: np.ndarray, path: Path, what: str) -> np.ndarray:
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ConvertError(f"{path}: the {what} hold {bad} NaN or infinite values; re-export the data")
    return x


def _images(x: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> np.ndarray:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape[1:]) or x.dtype.kind not in "fiu" or not len(x):
        raise ConvertError(f"{path}: {what} images are {x.dtype} of shape {tuple(x.shape)}, the model takes "
                           f"numbers of shape [N >= 1, {', '.join(map(str, shape[1:]))}] (NCHW)")
    return _finite(x.astype(np.float32), path, f"{what} images")


def _eval_set(request: ConvertRequest, shape: tuple[int, ...], classes: int) -> tuple[np.ndarray, np.ndarray | None,
                                                                                        np.ndarray | None]:
    """Eval images (NCHW), their labels and PyTorch logits when the eval set has them."""
    path = request.eval_npz
    if path is None:
        rng = np.random.default_rng(request.seed)
        return rng.standard_normal((RANDOM_EVAL_IMAGES, *shape[1:]), dtype=np.float32), None, None
    data = read_npz(path, "eval", ConvertError)
    x = _images(data["x"], shape, path, "eval")
    labels, logits = data.get("y"), data.get("torch_logits")
    if labels is not None and (labels.shape != (len(x),) or labels.dtype.kind not in "iu"):
        raise ConvertError(f"{path}: y is {labels.dtype} of shape {labels.shape}, expected ({len(x)},) integer labels")
    if labels is not None and (labels.min() < 0 or labels.max() >= classes):
        raise ConvertError(f"{path}: y holds labels outside 0..{classes - 1} (the manifest lists {classes} classes)")
    if logits is not None and (logits.shape != (len(x), classes) or logits.dtype.kind not in "fiu"):
        raise ConvertError(f"{path}: torch_logits is {logits.dtype} of shape {logits.shape}, expected "
                           f"({len(x)}, {classes}) logits (one per manifest class)")
    return (x, None if labels is None else labels.astype(np.int64),
            None if logits is None else _finite(logits.astype(np.float32), path, "torch_logits"))


def check_classes(manifest: mf.Manifest, width: int | None, request: ConvertRequest) -> None:
    """The manifest must name one class per logit of the model's output."""
    if width is not None and width != manifest.num_classes:
        raise ConvertError(f"{request.manifest}: lists {manifest.num_classes} classes but {request.onnx} gives "
                           f"{width} logits; the manifest's 'classes' must name one class per logit")


def load_inputs(request: ConvertRequest) -> Inputs:
    """Step 1: read and check the manifest, the ONNX graph and the eval / calibration sets."""
    manifest = mf.load(request.manifest)
    graph = load_graph(request.onnx)
    if manifest.input.layout != "NCHW" or tuple(manifest.input.shape) != graph.input_shape:
        raise ConvertError(f"{request.manifest}: input.shape {manifest.input.shape} ({manifest.input.layout}) does "
                           f"not match the ONNX input {list(graph.input_shape)} (NCHW)")
    x_eval, labels, torch_logits = _eval_set(request, graph.input_shape, manifest.num_classes)
    if request.calib_npz is None:
        x_calib = x_eval[:CALIB_FROM_EVAL]
    else:
        calib = read_npz(request.calib_npz, "calibration", ConvertError)
        x_calib = _images(calib["x"], graph.input_shape, request.calib_npz, "calibration")
    for node in graph.nodes:  # every op is in the op set, before TensorFlow starts
        if node.name not in graph.binarizer_nodes:
            handler_for(node)
    output = graph.shapes.get(graph.output_name)
    check_classes(manifest, output[-1] if output is not None and len(output) == 2 else None, request)
    return Inputs(manifest, graph, x_eval, x_calib, labels, torch_logits)


def convert_flatbuffers(graph: Graph, x_calib: np.ndarray, target: str, timer: StageTimer) -> Flatbuffers:
    """Step 2: the Keras model, then the LCE flatbuffer and the fp32 / integer TFLite baselines (``int8_form``)."""
    from convert.int8_qat import ACTIVATION_BITS, convert_int8_qat
    from convert.keras_builder import build_keras_model
    from convert.lce import convert_lce
    from convert.tflite import convert_fp32, convert_int8

    with timer.stage("build_keras"):
        built = build_keras_model(graph)
    with timer.stage("lce"):
        lce = convert_lce(built.model, target=target)
    with timer.stage("fp32"):
        fp32 = convert_fp32(built.model)
    form = int8_form(graph)
    with timer.stage("int8"):  # a graph with integer grids keeps them: quantization-aware
        calib = nchw_to_nhwc(x_calib)
        int8 = (convert_int8_qat(graph, calib, ACTIVATION_BITS[form]) if graph.has_qdq
                else convert_int8(built.model, calib))
    return Flatbuffers(built, {"lce": lce, "fp32": fp32, "int8": int8}, form)


@contextlib.contextmanager
def _engine_errors(engine: str, model: object) -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # the interpreters raise RuntimeError / their own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConvertError(f"{engine} cannot run {model} ({first})") from exc


def verify_parity(onnx_path: Path, inputs: Inputs, flatbuffers: Flatbuffers) -> dict[str, Any]:
    """Step 3: run the eval images through ONNX Runtime (the source model; QONNX ops as standard ONNX)
    and every flatbuffer; compare with the reference (the PyTorch logits when the eval set has them,
    else ONNX Runtime). Also count the exactly-0 inputs of plain-Sign binarizers (``sign_zero``)."""
    x_nhwc = nchw_to_nhwc(inputs.x_eval)
    outputs: dict[str, np.ndarray] = {}
    if inputs.torch_logits is not None:
        outputs["pytorch"] = inputs.torch_logits
    with _engine_errors("onnxruntime", onnx_path):
        outputs["onnxruntime"] = run_onnx(inputs.graph.reference, inputs.x_eval)
        zeros = sign_zero.count(inputs.graph, inputs.x_eval)
    for kind, (engine, run) in [*ENGINES.items(), *WITHOUT_DELEGATE.items()]:
        with _engine_errors(engine, "the converted model"):
            outputs[engine] = run(flatbuffers.models[kind], x_nhwc)
    return report.parity(outputs, "pytorch" if "pytorch" in outputs else "onnxruntime", inputs.labels) | {
        "sign_zero": zeros}


BLOBS = {"blob": False, "mcu_blob": True}
"""The C engine's compiled models in a bundle (BundleDir / DeploySection field -> memory fusion): one planned
for speed (application cores), one for the smallest arena (microcontrollers)."""


def engine_blobs(lce: bytes) -> tuple[dict[str, CompiledBlob], dict[str, Any]]:
    """The LCE model compiled for the C engine (runtime/native), each of ``BLOBS``, and the report entries. A
    model with an op the engine does not run gets no blob, only the reason; the rest of the bundle is
    unaffected."""
    blobs: dict[str, CompiledBlob] = {}
    entries: dict[str, Any] = {}
    for name, memory_fusion in BLOBS.items():
        try:
            blob = blobs[name] = compile_blob(lce, memory_fusion=memory_fusion)
        except BlobError as exc:
            entries[name] = {"written": False, "reason": str(exc)}
            continue
        entries[name] = {"written": True, "format_version": blob.format_version, "bytes": len(blob.data),
                          "arena_bytes": blob.arena_bytes, "ops": [op.kind for op in blob.ops]}
    return blobs, entries


def convert(request: ConvertRequest) -> ConvertResult:
    """Convert and verify one model and write its bundle to ``request.out``; every stage is timed.

    ``ParityGateError`` (no bundle written, the report kept in ``BundleDir.rejected``) when parity misses
    ``request.gate``."""
    check_outputs(request.out, request.inputs)
    timer = StageTimer()
    with timer.stage("load"):
        inputs = load_inputs(request)
    with quiet():
        flatbuffers = convert_flatbuffers(inputs.graph, inputs.x_calib, request.target, timer)
    check_classes(inputs.manifest, int(flatbuffers.built.model.output_shape[-1]), request)
    with timer.stage("blob"):
        blobs, blob_entries = engine_blobs(flatbuffers.models["lce"])
    with timer.stage("parity"), quiet():
        parity = verify_parity(request.onnx, inputs, flatbuffers)
    timing_s = timer.summary()
    with timer.stage("report"):
        result = report.assemble(
            model_name=inputs.manifest.model_name, source=request.onnx, target=request.target,
            input_nchw=inputs.graph.input_shape, onnx_ops=inputs.graph.op_histogram(),
            models={ENGINES[kind][0]: fb for kind, fb in flatbuffers.models.items()},
            layers=flatbuffers.built.layers, parity=parity, gate=request.gate.for_graph(inputs.graph.has_qdq).verdict(parity),
            calibration_images=len(inputs.x_calib), timing_s=timing_s, int8_form=flatbuffers.int8_form)
        result["engine_blob"], result["engine_mcu_blob"] = blob_entries["blob"], blob_entries["mcu_blob"]
        if inputs.graph.weight_grids:
            from convert.int8_qat import grid_check

            result["int8_grids"] = grid_check(inputs.graph, flatbuffers.models["int8"])
        manifest = deploy_manifest(inputs.manifest, inputs.graph.input_shape, parity, flatbuffers.models,
                                   flatbuffers.built.layers, blobs, int8_form=flatbuffers.int8_form)
    if not result["gate"]["passed"]:
        kept = write_rejected(request.out, result)
        raise ParityGateError(f"{request.out}: no bundle written: the parity gate failed "
                              f"({'; '.join(result['gate']['failures'])}); report kept in {kept}")
    with timer.stage("write"):
        eval_arrays = {"x": nchw_to_nhwc(inputs.x_eval)} | ({} if inputs.labels is None else {"y": inputs.labels})
        write_bundle(request.out, manifest, flatbuffers.models, eval_arrays, result,
                     {name: blob.data for name, blob in blobs.items()})
        discard_rejected(request.out)
    return ConvertResult(result, timer.summary(), request.out)
