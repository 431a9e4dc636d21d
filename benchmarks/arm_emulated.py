"""The 1-bit model beside LiteRT on emulated ARM cores: top-1, agreement with the host, instructions per inference.

    .venv/bin/python benchmarks/arm_emulated.py [--bundle runs/fmnist_bitat] [--float-run runs/fmnist_float]
        [--images 10000] [--litert-images N] [--count-images 3]

Rows, per emulated device (qemu-aarch64 -cpu cortex-a72; qemu-armv7 -cpu cortex-a7):
- ``1-bit, our engine``: the bundle's model.tflite on our C engine (when the checkout has it),
- ``1-bit graph in fp32, LiteRT``: the bundle's model_fp32.tflite (the same binary math in float),
- ``float fp32, LiteRT`` / ``float int8, LiteRT``: the float model of the same architecture (a copy of
  ``make train``'s float run, converted with ``bitat-edge convert run``); the int8 model is checked to be
  fully integer between its input QUANTIZE and output DEQUANTIZE.
Every row runs through ``bench.py``'s session machinery: top-1 on ``--images`` eval images without the
counter, instructions of ``--count-images`` invokes with the QEMU plugin, and the same images on the host
(LCE's interpreter for the LCE model, TensorFlow's TFLite for the others) for ``agreement_top1``.
Each row states its image count: a finished session over more images than asked is reused as it is.
LiteRT publishes no armv7 wheel, so qemu-armv7 has only our engine's row.

Writes results/arm_emulated.json, the README table results/arm_emulated.md and the plot
results/arm_emulated.png. All counts are EMULATED instructions, never time. Sessions are kept under
``--work``/bench; a rerun reuses a finished session of the same model file, engine and image count
(``--fresh`` measures again), so an interrupted run (Ctrl-C) resumes where it stopped. A session over more
images than asked is reused too (the row says how many it has).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bitat_edge import bench_record  # noqa: E402
from bitat_edge.atomic import write_json, write_text  # noqa: E402
from bitat_edge.bench_record import Measurement  # noqa: E402
from runtime import plots  # noqa: E402
from runtime.bundle import Bundle, load_bundle, sha256_file  # noqa: E402
from runtime.devices import resolve_device  # noqa: E402
from runtime.emulation.sysroot import NO_LITERT  # noqa: E402
from runtime.engines import ENGINES  # noqa: E402
from runtime.errors import BenchError  # noqa: E402
from runtime.protocol import Protocol  # noqa: E402
from runtime.request import SessionRequest  # noqa: E402
from runtime.session import run_session  # noqa: E402

OUR_ENGINE = "native"  # runtime/engines/native.py: our C engine (issue 9)
DEVICES = ("qemu-aarch64", "qemu-armv7")
RUN_FILES = ("manifest.json", "model.onnx", "eval.npz", "calib.npz", "config.yaml", "summary.json")


@dataclass(frozen=True)
class Row:
    """One model on one engine: where it comes from and what it is compared with on the host."""

    name: str
    bundle: Bundle
    kind: str
    engine: str
    host_engine: str
    litert: bool  # a LiteRT row (runs only where the emulation sysroot has LiteRT)


def _rel(path: Path) -> str:
    """A path for committed files: relative to the repository when inside it, else just its last parts."""
    path = path.resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(Path(*path.parts[-3:]))


def float_bundle(float_run: Path, work: Path, echo) -> Path:
    """The float model's deploy bundle: a copy of ``float_run`` converted by ``bitat-edge convert run``
    (the run itself is never written); reused while the copy's model.onnx matches the run's."""
    source = float_run / "model.onnx"
    if not source.is_file():
        raise BenchError(f"{float_run}: no model.onnx; run `make train` (its float run) first")
    copy = work / float_run.name
    if copy.resolve() == float_run.resolve():
        raise BenchError(f"--work {work} holds the float run itself; pick another --work (the run is never written)")
    if (copy / "deploy" / "manifest.json").is_file() and sha256_file(copy / "model.onnx") == sha256_file(source):
        return copy / "deploy"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for name in RUN_FILES:
        if (float_run / name).is_file():
            shutil.copy2(float_run / name, copy / name)
    echo(f"converting a copy of {float_run} into {copy}/deploy (bitat-edge convert run; a few minutes)")
    cli = Path(sys.executable).with_name("bitat-edge")  # the console script of this environment
    done = subprocess.run([str(cli), "convert", "run", str(copy)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(copy, ignore_errors=True)
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"converting the float run failed: {tail}")
    return copy / "deploy"


def int8_op_histogram(model: Path) -> dict[str, int]:
    """Operator counts of an int8 model, refused unless every op between the input QUANTIZE and the output
    DEQUANTIZE reads and writes int8 (a fully integer model; a float op inside would make it no fair baseline)."""
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.Model import Model
    from tflite.TensorType import TensorType

    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
    flat = Model.GetRootAs(model.read_bytes(), 0)
    graph = flat.Subgraphs(0)
    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = flat.OperatorCodes(op.OpcodeIndex())
        name = op_names.get(max(code.DeprecatedBuiltinCode(), code.BuiltinCode()), "CUSTOM")
        ops.append((name, type_names[graph.Tensors(op.Inputs(0)).Type()], type_names[graph.Tensors(op.Outputs(0)).Type()]))
    inner = ops[1:-1]
    if (ops[0] != ("QUANTIZE", "FLOAT32", "INT8") or ops[-1] != ("DEQUANTIZE", "INT8", "FLOAT32")
            or any(i != "INT8" or o != "INT8" for _, i, o in inner)):
        odd = [f"{n} {i}->{o}" for n, i, o in ops if (i, o) != ("INT8", "INT8")]
        raise BenchError(f"{model}: not fully int8 between QUANTIZE and DEQUANTIZE (non-int8 ops: {', '.join(odd)})")
    histogram: dict[str, int] = {}
    for name, _, _ in ops:
        histogram[name] = histogram.get(name, 0) + 1
    return dict(sorted(histogram.items()))


def _finished(root: Path, device: str, row: Row, engine: str, images: int,
              counted: bool) -> tuple[Path, Measurement] | None:
    """The newest finished session of ``row`` by ``engine`` on ``device`` over at least ``images`` images,
    with its predictions (and instruction counts if ``counted``)."""
    sha = row.bundle.models[row.kind].sha256
    for record in sorted(root.glob(f"{device}-*/results.json"), reverse=True):
        try:
            session = bench_record.load(record)
        except bench_record.BenchRecordError:
            continue
        for m in session.measurements:
            if (m.model_sha256 == sha and m.engine == engine and m.accuracy is not None
                    and m.accuracy.total >= images and (m.instructions is not None or not counted)
                    and (record.parent / f"predictions_{m.model}.npy").is_file()):
                return record.parent, m
    return None


def measure(row: Row, device: str, images: int, count_images: int, root: Path, fresh: bool,
            timeout: float, echo) -> tuple[Path, Measurement, np.ndarray]:
    """Measure ``row`` on ``device`` (or reuse a finished session); its predictions come from the session's file."""
    emulated = device != "host"
    engine = row.engine if emulated else row.host_engine
    found = None if fresh else _finished(root, device, row, engine, images, emulated)
    if found is None:
        request = SessionRequest(
            device=resolve_device(device), bundle=row.bundle, protocol=Protocol(warmup=1, runs=1, windows=1),
            kinds=(row.kind,), engine=engine, eval_samples=images,
            bench_root=root, timeout=timeout, count_images=count_images)
        session_dir, session = run_session(request, echo=echo)
        found = session_dir, session.measurements[0]
    else:
        echo(f"{row.name} on {device}: reusing {found[0]}")
    session_dir, m = found
    return session_dir, m, np.load(session_dir / f"predictions_{m.model}.npy")


def render_markdown(summary: dict) -> str:
    """The README section: one table per emulated device, then the ratios the goals are about."""
    lines = [
        f"**EMULATED** (QEMU user mode; instruction counts, not time) on `{summary['bundle']}`; generated by "
        "benchmarks/arm_emulated.py from results/arm_emulated.json. Instructions are per inference (the "
        "interpreter's invoke, or our engine's whole model), counted exactly by our TCG plugin; agreement is "
        "top-1 agreement with the same model on the host (LCE's interpreter for the LCE model, TensorFlow's "
        "TFLite otherwise).",
        "",
    ]
    for device in DEVICES:
        rows = [r for r in summary["rows"] if r["device"] == device]
        cpu = summary["cpus"][device]
        lines += [f"**{device}** (-cpu {cpu})", ""]
        if rows:
            lines += ["| model | engine | images | top-1 | agreement | instructions / inference | binary MACs / instruction |",
                      "|---|---|---|---|---|---|---|"]
            for r in rows:
                macs = "-" if r["binary_macs_per_instruction"] is None else f"{r['binary_macs_per_instruction']:.1f}"
                lines.append(f"| {r['name']} | {r['engine_version']} | {r['images']:,} | {100 * r['top1']:.2f} % | "
                             f"{100 * r['agreement_top1']:.2f} % | {r['instructions_per_inference'] / 1e6:.2f} M | {macs} |")
        lines += [f"- {note}" for note in summary["missing"] if note.startswith(device)]
        lines.append("")
    for device, ratios in (item for item in summary["ratios"].items() if item[1]):
        lines += [f"Instruction ratios on {device}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + ".", ""]
    lines += [f"The float int8 model is fully integer between QUANTIZE and DEQUANTIZE: "
              f"{', '.join(f'{k} {v}' for k, v in summary['int8_op_histogram'].items())}. {summary['date']}."]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--bundle", default="runs/fmnist_bitat", show_default=True, help="The 1-bit deploy or run directory.")
@click.option("--float-run", default="runs/fmnist_float", show_default=True, type=click.Path(file_okay=False),
              help="`make train`'s float run (read only; a copy is converted).")
@click.option("--work", default="runs/arm_emulated", show_default=True, type=click.Path(file_okay=False),
              help="Where the float model's converted copy and the bench sessions go.")
@click.option("--images", default=10000, show_default=True, type=click.IntRange(min=1),
              help="Eval images for top-1 and agreement (our engine's rows).")
@click.option("--litert-images", default=None, type=click.IntRange(min=1),
              help="Eval images for the LiteRT rows (default: --images; LiteRT's float kernels emulate at about "
                   "0.5 s per image here).")
@click.option("--count-images", default=3, show_default=True, type=click.IntRange(min=1),
              help="Images whose invokes are counted with the plugin.")
@click.option("--timeout", default=6 * 3600.0, show_default=True, help="Seconds allowed per emulated command.")
@click.option("--fresh", is_flag=True, help="Measure every row again instead of reusing finished sessions "
              "(a reused session keeps the --count-images it was measured with).")
@click.option("--out", default=str(REPO / "results" / "arm_emulated.json"), show_default=True,
              type=click.Path(dir_okay=False), help="Result file; the table (.md) and plot (.png) go beside it.")
def main(bundle: str, float_run: str, work: str, images: int, litert_images: int | None, count_images: int,
         timeout: float, fresh: bool, out: str) -> None:
    """Measure the 1-bit model and the LiteRT baselines on emulated Cortex-A72 and Cortex-A7 cores."""
    echo = click.echo
    litert_images = litert_images or images
    root = Path(work) / "bench"
    try:
        binary = load_bundle(bundle, ("lce", "fp32"))
        floats = load_bundle(float_bundle(Path(float_run), Path(work), echo), ("fp32", "int8"))
        histogram = int8_op_histogram(floats.models["int8"].path)
        plan = [Row("1-bit graph in fp32, LiteRT", binary, "fp32", "tflite-interpreter", "tflite-interpreter", True),
                Row("float fp32, LiteRT", floats, "fp32", "tflite-interpreter", "tflite-interpreter", True),
                Row("float int8, LiteRT", floats, "int8", "tflite-interpreter", "tflite-interpreter", True)]
        missing = []
        if OUR_ENGINE in ENGINES:
            plan.insert(0, Row("1-bit, our engine", binary, "lce", OUR_ENGINE, "lce-interpreter", False))
        else:
            missing += [f"{d}: no row for our engine: this checkout has no '{OUR_ENGINE}' engine "
                        "(runtime/engines/native.py)" for d in DEVICES]
        rows = []
        for device in DEVICES:
            arch = resolve_device(device).arch
            if arch in NO_LITERT:
                missing.append(f"{device}: no LiteRT rows: {NO_LITERT[arch]}")
            for row in plan:
                if row.litert and arch in NO_LITERT:
                    continue
                n = litert_images if row.litert else images
                session_dir, m, pred = measure(row, device, n, count_images, root, fresh, timeout, echo)
                _, host, host_pred = measure(row, "host", len(pred), count_images, root, fresh, timeout, echo)
                host_pred = host_pred[: len(pred)]  # the same first eval images
                count = m.instructions
                rows.append({
                    "device": device, "name": row.name, "model": m.model, "file": m.file,
                    "model_sha256": m.model_sha256, "engine": m.engine, "engine_version": m.engine_version,
                    "images": m.accuracy.total, "top1": m.accuracy.top1,
                    "agreement_top1": float(np.mean(pred == host_pred)),
                    "agreement_reference": f"host {host.engine} ({host.engine_version})",
                    "instructions_per_inference": count.per_inference, "cpu": count.cpu, "method": count.method,
                    "per_op": [op.to_dict() for op in count.per_op],
                    "binary_macs_per_instruction": count.binary_macs_per_instruction,
                    "notes": m.notes, "session": _rel(session_dir),
                })
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        echo(f"interrupted: finished sessions stay in {root} and are reused by the next run", err=True)
        sys.exit(130)
    ratios = {}
    for device in DEVICES:
        by_name = {r["name"]: r["instructions_per_inference"] for r in rows if r["device"] == device}
        ours = by_name.pop("1-bit, our engine", None)
        if ours:
            ratios[device] = {f"{name} / 1-bit": count / ours for name, count in by_name.items()}
    summary = {
        "benchmark": "arm_emulated",
        "label": "EMULATED: instruction counts under QEMU user mode, not time",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": _rel(binary.root), "float_bundle": _rel(floats.root),
        "cpus": {d: resolve_device(d).qemu.cpu for d in DEVICES},
        "int8_op_histogram": histogram, "rows": rows, "ratios": ratios, "missing": missing,
    }
    path = Path(out)
    write_json(path, summary)
    write_text(path.with_suffix(".md"), render_markdown(summary))
    plots.accuracy_vs_instructions(
        [(r["device"], r["name"], r["instructions_per_inference"], r["top1"]) for r in rows], path.with_suffix(".png"),
        f"EMULATED: {summary['bundle']} and LiteRT baselines")
    echo(json.dumps(ratios, indent=2))
    echo(f"wrote {path} (+ .md, .png)")


if __name__ == "__main__":
    main()
