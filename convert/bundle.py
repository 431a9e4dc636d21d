"""ONNX + manifest (+ eval/calibration sets) -> a deploy bundle directory, all or nothing.

The bundle is built in a temporary sibling directory and renamed into place only when every file
is written, so a failed conversion leaves the previous bundle (or nothing) behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bitat_edge import manifest as mf
from bitat_edge.atomic import write_bytes, write_json, write_text
from bitat_edge.layout import BundleDir
from convert import engines, report
from convert.errors import ConvertError
from convert.keras_builder import build_keras_model
from convert.lce import BCONV, convert_lce, op_histogram
from convert.onnx_graph import load_graph
from convert.tflite import convert_fp32, convert_int8

RANDOM_EVAL_IMAGES = 64
CALIB_FROM_EVAL = 200


def _load_npz(path: Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            missing = [k for k in keys if k not in data]
            if missing:
                raise ConvertError(f"{path}: the {what} file lacks the array '{missing[0]}' "
                                   f"(it needs {', '.join(keys)})")
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ConvertError(f"{path}: {what} file not found") from None
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{path}: not a readable .npz {what} file ({exc})") from None


def _check_images(x: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> np.ndarray:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape[1:]):
        raise ConvertError(f"{path}: {what} images have shape {tuple(x.shape)}, the model takes "
                           f"[N, {', '.join(map(str, shape[1:]))}] (NCHW)")
    return x.astype(np.float32)


def _versions() -> dict[str, str]:
    names = {"larq_compute_engine": "larq-compute-engine", "tensorflow": "tensorflow", "larq": "larq",
             "onnx": "onnx", "onnxruntime": "onnxruntime"}
    return {k: importlib.metadata.version(v) for k, v in names.items()}


def _replace_dir(tmp: Path, out: Path) -> None:
    backup = None
    if out.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, backup / out.name)
    os.rename(tmp, out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def convert_model(onnx_path: str | os.PathLike[str], manifest_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                  eval_npz: str | os.PathLike[str] | None = None, calib_npz: str | os.PathLike[str] | None = None,
                  target: str = "arm", seed: int = 0) -> dict[str, Any]:
    """Convert and verify one model; write the bundle into ``out_dir``; return the report dict.

    Without ``eval_npz`` parity runs on ``RANDOM_EVAL_IMAGES`` random inputs; without ``calib_npz``
    int8 calibration uses the eval images.
    """
    onnx_path, out = Path(onnx_path), Path(out_dir)
    started = time.perf_counter()
    manifest = mf.load(manifest_path)
    graph = load_graph(onnx_path)
    if manifest.input.layout != "NCHW" or tuple(manifest.input.shape) != graph.input_shape:
        raise ConvertError(f"{manifest_path}: input.shape {manifest.input.shape} ({manifest.input.layout}) does not "
                           f"match the ONNX input {list(graph.input_shape)} (NCHW)")
    labels = torch_logits = None
    if eval_npz is not None:
        data = _load_npz(Path(eval_npz), "eval", ("x",))
        x_eval = _check_images(data["x"], graph.input_shape, Path(eval_npz), "eval")
        labels = data["y"].astype(np.int64) if "y" in data else None
        if labels is not None and labels.shape != (len(x_eval),):
            raise ConvertError(f"{eval_npz}: y has shape {labels.shape}, expected ({len(x_eval)},) labels")
        torch_logits = data.get("torch_logits")
    else:
        x_eval = np.random.default_rng(seed).standard_normal((RANDOM_EVAL_IMAGES, *graph.input_shape[1:]),
                                                             dtype=np.float32)
    if calib_npz is not None:
        x_calib = _check_images(_load_npz(Path(calib_npz), "calibration", ("x",))["x"], graph.input_shape,
                                Path(calib_npz), "calibration")
    else:
        x_calib = x_eval[:CALIB_FROM_EVAL]

    timing: dict[str, float] = {}
    t = time.perf_counter()
    built = build_keras_model(graph)
    timing["build_keras"] = time.perf_counter() - t
    t = time.perf_counter()
    lce_fb = convert_lce(built.model, target=target)
    timing["lce"] = time.perf_counter() - t
    t = time.perf_counter()
    fp32_fb = convert_fp32(built.model)
    timing["fp32"] = time.perf_counter() - t
    t = time.perf_counter()
    int8_fb = convert_int8(built.model, engines.nchw_to_nhwc(x_calib))
    timing["int8"] = time.perf_counter() - t
    timing["conversion_total"] = time.perf_counter() - started

    t = time.perf_counter()
    x_nhwc = engines.nchw_to_nhwc(x_eval)
    outputs: dict[str, np.ndarray] = {}
    if torch_logits is not None:
        if torch_logits.shape[0] != len(x_eval):
            raise ConvertError(f"{eval_npz}: torch_logits has {torch_logits.shape[0]} rows for {len(x_eval)} images")
        outputs["pytorch"] = torch_logits.astype(np.float32)
    outputs["onnxruntime"] = engines.run_onnx(onnx_path, x_eval)
    outputs["lce"] = engines.run_lce(lce_fb, x_nhwc)
    outputs["tflite_fp32"] = engines.run_tflite(fp32_fb, x_nhwc)
    outputs["tflite_int8"] = engines.run_tflite(int8_fb, x_nhwc)
    timing["parity"] = time.perf_counter() - t
    timing["total"] = time.perf_counter() - started

    ops = {"onnx": graph.op_histogram(), "lce": op_histogram(lce_fb), "tflite_fp32": op_histogram(fp32_fb),
           "tflite_int8": op_histogram(int8_fb)}
    layers = report.layer_summary(built.layers)
    bconv = ops["lce"].get(BCONV, 0)
    problems = ([] if bconv == layers["binary"] else
                [f"the builder lowered {layers['binary']} layers as binary but LCE emitted {bconv} {BCONV}"])
    sizes = {"onnx": onnx_path.stat().st_size, "tflite_fp32": len(fp32_fb), "tflite_int8": len(int8_fb),
             "lce": len(lce_fb)}
    par = report.parity(outputs, "pytorch" if "pytorch" in outputs else "onnxruntime", labels)
    result: dict[str, Any] = {
        "model_name": manifest.model_name, "source": str(onnx_path), "target": target, "versions": _versions(),
        "input_nchw": list(graph.input_shape), "ops": ops, "lce_bconv2d": bconv,
        "binary_check": {"ok": not problems, "all_binary_intent_lowered": not layers["float_binary_intent"],
                         "problems": problems},
        "sizes_bytes": sizes, "lce_over_fp32": len(lce_fb) / len(fp32_fb), "layers": layers, "parity": par,
        "timing_s": {k: round(v, 3) for k, v in timing.items()},
    }

    _, c, h, w = graph.input_shape
    engine_of_kind = {"lce": "lce", "fp32": "tflite_fp32", "int8": "tflite_int8"}
    deploy = mf.DeploySection(
        input_shape=[1, h, w, c],
        reference_top1={kind: round(par["engines"][engine].get("top1", par["engines"][engine]["agreement"]), 6)
                        for kind, engine in engine_of_kind.items()},
        top1_is="accuracy" if labels is not None else "agreement", reference=par["reference"],
        sha256={k: hashlib.sha256(b).hexdigest() for k, b in (("lce", lce_fb), ("fp32", fp32_fb), ("int8", int8_fb))})
    layers_spec = manifest.layers or [  # a foreign model's manifest may not list its layers
        mf.LayerSpec(name=r.name, op=r.op, precision=r.precision, reason=r.reason) for r in built.layers]
    out_manifest = manifest.model_copy(update={"deploy": deploy, "layers": layers_spec})
    eval_arrays = {"x": x_nhwc} | ({"y": labels} if labels is not None else {})

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes a private 0700 directory; the bundle is an ordinary one
        files = BundleDir(tmp)
        write_bytes(files.model("lce"), lce_fb)
        write_bytes(files.model("fp32"), fp32_fb)
        write_bytes(files.model("int8"), int8_fb)
        with open(files.eval, "wb") as handle:
            np.savez(handle, **eval_arrays)
        write_json(files.report_json, result)
        write_text(files.report_md, report.render_markdown(result))
        out_manifest.save(files.manifest)
        _replace_dir(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return result
