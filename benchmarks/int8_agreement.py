"""Benchmark: the integer flatbuffer of grid runs (UniQ W2A2/W4A4, QAF), rebuilt with the current converter
and run on the host over the run's whole eval set, without re-making the LCE / fp32 models and their
parity runs (``bitat-edge convert run`` does all of that; on a busy 2-core machine it takes ~30 min).

Uses ``convert.int8_qat.convert_int8_qat`` on the run's model.onnx and calib.npz (what the convert
pipeline does for a graph with integer grids, by default in the pipeline's form
``convert.pipeline.GRID_INT8_FORM``), runs the flatbuffer with the TFLite interpreter on every image of
eval.npz and compares its top-1 with the PyTorch logits stored there. The run directory is
only read. Writes one entry per run and form into ``results/int8_agreement.json`` (other entries kept),
keyed ``<run> <form>``: ``int8`` (every tensor of the integer part int8) or ``int16x8`` (grid convs on
int16 activations, int8 weights; the element-wise ops between them float; see ``convert.int8_qat``).
``deployed_top1`` / ``deployed_bytes``: top-1 and size of the flatbuffer of that form.

    .venv/bin/python benchmarks/int8_agreement.py runs/bench_methods_fmnist/uniq_w2a2_s0 --form int16x8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's bitat_edge/ and convert/, not the installed ones
from bitat_edge.atomic import write_json  # noqa: E402
from bitat_edge.manifest import INTEGER_FORMS  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", type=Path, nargs="+", help="exported runs (model.onnx, eval.npz, calib.npz)")
    p.add_argument("--results", type=Path, default=REPO / "results" / "int8_agreement.json", help="result file")
    p.add_argument("--form", choices=sorted(INTEGER_FORMS), default=None,
                   help="the integer form to build [default: the convert pipeline's for grid graphs]")
    args = p.parse_args(argv)
    for run in args.run_dirs:
        missing = [f for f in ("model.onnx", "eval.npz", "calib.npz") if not (run / f).is_file()]
        if missing:
            p.error(f"{run}: no {', '.join(missing)} (export the run first: python -m train.cli export {run})")
    if args.form is None:
        from convert.pipeline import GRID_INT8_FORM

        args.form = GRID_INT8_FORM
    return args


def measure(run: Path, form: str) -> dict[str, object]:
    """Rebuild the integer flatbuffer of ``run`` in ``form`` and measure it against the stored PyTorch logits."""
    from convert.engines import nchw_to_nhwc, run_tflite
    from convert.int8_qat import ACTIVATION_BITS, convert_int8_qat, grid_check
    from convert.lce import op_histogram
    from convert.onnx_graph import load_graph

    graph = load_graph(run / "model.onnx")
    with np.load(run / "eval.npz") as ev, np.load(run / "calib.npz") as calib:
        x, labels, torch_logits = nchw_to_nhwc(ev["x"]), ev["y"], ev["torch_logits"]
        x_calib = nchw_to_nhwc(calib["x"])
    start = time.perf_counter()
    flatbuffer = convert_int8_qat(graph, x_calib, ACTIVATION_BITS[form])
    seconds = time.perf_counter() - start
    logits = run_tflite(flatbuffer, x)  # default delegates, as the convert pipeline's parity check
    return {"form": form, "images": len(x),
            "agreement": float(np.mean(logits.argmax(1) == torch_logits.argmax(1))),
            "deployed_top1": float(np.mean(logits.argmax(1) == labels)),
            "torch_top1": float(np.mean(torch_logits.argmax(1) == labels)),
            "max_abs_logit_diff": float(np.abs(logits - torch_logits).max()), "deployed_bytes": len(flatbuffer),
            "int8_grids": grid_check(graph, flatbuffer), "ops": op_histogram(flatbuffer),
            "calibration_images": len(x_calib), "int8_convert_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for run in args.run_dirs:
        entry = measure(run, args.form)  # minutes: read the file after it, so entries written meanwhile are kept
        results = json.loads(args.results.read_text(encoding="utf-8")) if args.results.is_file() else {}
        results[f"{os.path.relpath(run.resolve(), REPO)} {args.form}"] = entry
        write_json(args.results, results)
        print(f"{run} ({args.form}): agreement {100 * entry['agreement']:.2f} %, "
              f"deployed top-1 {100 * entry['deployed_top1']:.2f} %, "
              f"grids exact {entry['int8_grids']['exact']} of {entry['int8_grids']['grid_convs']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
