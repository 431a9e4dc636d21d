"""Benchmark: how long converting one model takes on this machine (goal: under 60 s for the default model).

Times each conversion stage in this process (``load_graph`` -> ``build_keras_model`` -> LCE
flatbuffer -> fp32 TFLite -> int8 TFLite calibrated on ``calib.npz``), ``--repeats`` times; the
first repeat also pays TensorFlow's one-off start-up and is reported separately ("cold"). Parity
runs are not part of it (``bitat-edge convert run`` reports those). Writes
``results/convert_time.json``.

    .venv/bin/python benchmarks/convert_time.py runs/fmnist_bitat
    .venv/bin/python benchmarks/convert_time.py path/to/model.onnx --repeats 1
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bitat_edge.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 60.0
CALIB_IMAGES = 256


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="a run directory (model.onnx [+ calib.npz]) or an .onnx file")
    p.add_argument("--repeats", type=int, default=3, help="conversions to time (default 3)")
    p.add_argument("--results", type=Path, default=REPO / "results" / "convert_time.json", help="result file")
    args = p.parse_args(argv)
    onnx_path = args.source / "model.onnx" if args.source.is_dir() else args.source
    if not onnx_path.is_file():
        p.error(f"{onnx_path} not found; pass a run directory with model.onnx or an .onnx file")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    args.onnx = onnx_path
    return args


def convert_once(onnx_path: Path, calib: np.ndarray | None) -> tuple[dict[str, float], dict[str, Any]]:
    """One full conversion; per-stage seconds and what came out."""
    from convert.engines import nchw_to_nhwc
    from convert.keras_builder import build_keras_model
    from convert.lce import BCONV, convert_lce, op_histogram
    from convert.onnx_graph import load_graph
    from convert.tflite import convert_fp32, convert_int8

    seconds: dict[str, float] = {}
    start = t = time.perf_counter()
    graph = load_graph(onnx_path)
    seconds["load_onnx"] = time.perf_counter() - t
    t = time.perf_counter()
    built = build_keras_model(graph)
    seconds["build_keras"] = time.perf_counter() - t
    t = time.perf_counter()
    lce_fb = convert_lce(built.model)
    seconds["lce"] = time.perf_counter() - t
    t = time.perf_counter()
    fp32_fb = convert_fp32(built.model)
    seconds["tflite_fp32"] = time.perf_counter() - t
    if calib is None:
        calib = np.random.default_rng(0).standard_normal((64, *graph.input_shape[1:]), dtype=np.float32)
    t = time.perf_counter()
    int8_fb = convert_int8(built.model, nchw_to_nhwc(calib[:CALIB_IMAGES]))
    seconds["tflite_int8"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    info = {"lce_bytes": len(lce_fb), "fp32_bytes": len(fp32_fb), "int8_bytes": len(int8_fb),
            "lce_bconv2d": op_histogram(lce_fb).get(BCONV, 0), "binary_layers": len(built.binary_layers),
            "calibration_images": int(min(len(calib), CALIB_IMAGES))}
    return seconds, info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    calib_path = args.onnx.with_name("calib.npz")
    calib = None
    if calib_path.is_file():
        with np.load(calib_path) as data:
            calib = data["x"].astype(np.float32)
    runs = []
    for i in range(args.repeats):
        seconds, info = convert_once(args.onnx, calib)
        runs.append(seconds)
        print(f"conversion {i + 1}/{args.repeats}: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()),
              flush=True)
    warm = runs[1:] or runs
    result = {
        "benchmark": "convert_time",
        "model": str(args.onnx),
        "model_sha256": hashlib.sha256(args.onnx.read_bytes()).hexdigest(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_at_end": list(os.getloadavg())},
        "versions": {p: metadata.version(p) for p in ("larq-compute-engine", "tensorflow", "onnx")},
        "repeats": args.repeats,
        "cold_seconds": runs[0],
        "warm_median_seconds": {k: statistics.median(r[k] for r in warm) for k in runs[0]},
        "warm_spread_seconds": {k: max(r[k] for r in warm) - min(r[k] for r in warm) for k in runs[0]},
        "runs": runs,
        "output": info,
        "goal_seconds": GOAL_SECONDS,
        "meets_goal": runs[0]["total"] < GOAL_SECONDS,
    }
    write_json(args.results, result)
    print(f"wrote {args.results}: cold {runs[0]['total']:.1f} s, warm median "
          f"{result['warm_median_seconds']['total']:.1f} s (goal < {GOAL_SECONDS:.0f} s)")
    return result


if __name__ == "__main__":
    main()
