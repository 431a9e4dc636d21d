"""Benchmark: UniQ, QuantNet and QAF beside float, STE and BiTAT on Fashion-MNIST at equal budget,
trained, deployed and measured on the host.

Every quantized run goes through the train CLI (``--reuse``: a finished run is kept, an interrupted one
resumes) from the default quantized config (``configs/fmnist_bitat.yaml``: its epochs, optimizer,
schedule, distillation and float initialisation) with only the method swapped; then through
``bitat-edge convert run``. The float row is the float config's run: at the seed of ``--float-run``
that run itself (the teacher and initialisation of every other row), at other seeds a run of its own.
The W1A1 rows (STE, BiTAT, UniQ, QuantNet) deploy the LCE flatbuffer, the float row the fp32 TFLite
one, the others the integer TFLite one (``model_int8.tflite``; its form, int16x8 for grid runs
converted by the current pipeline, is read from the run's deploy report); each is run on the host
over the whole test set by the converter's parity check. Writes ``results/methods_fmnist.csv`` and
the generated ``results/methods_fmnist.md`` (paths relative to the repository root).

    .venv/bin/python benchmarks/methods_fmnist.py --seeds 0,1,2 --jobs 2
    .venv/bin/python benchmarks/methods_fmnist.py --only uniq_w1a1 --stage train
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from bitat_edge.atomic import write_text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.bitat_fmnist import DESCRIPTIONS as BITAT_ROWS  # noqa: E402
from benchmarks.bitat_fmnist import VARIANTS as BITAT_RECIPES  # noqa: E402
from benchmarks.tables import csv_text, mean_sd  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One row: the method overrides, the deployed bundle model kind and what the row is."""

    overrides: tuple[str, ...]
    deploy: str  # bundle model kind: "lce", "fp32" or "int8" (whose form the deploy report names)
    what: str
    quantized: bool = True  # False: trained from --float-config, without initialisation or teacher


def _bitat_benchmark_row(name: str) -> Variant:
    """A W1A1 row of the BiTAT benchmark (STE recipes, BiTAT) with that benchmark's overrides and description."""
    return Variant(tuple(BITAT_RECIPES[name][1]), "lce", BITAT_ROWS[name])


VARIANTS: dict[str, Variant] = {
    "float": Variant((), "fp32", "the float model (at --float-run's seed that run: every other row's teacher and "
                     "initialisation)", quantized=False),
    **{name: _bitat_benchmark_row(name) for name in ("ste", "ste_best", "bitat")},
    "uniq_w1a1": Variant(("method={name: uniq, bits: 1}",), "lce", "UniQ, {0, Delta} activations as LCE +/-1"),
    "uniq_w2a2": Variant(("method={name: uniq, bits: 2}",), "int8", "UniQ 2-bit weights and activations"),
    "uniq_w4a4": Variant(("method={name: uniq, bits: 4}",), "int8", "UniQ 4-bit weights and activations"),
    "quantnet_w1a1": Variant(("method={name: quantnet}",), "lce", "QuantNet (our interpretation)"),
    "qaf_w8": Variant(("method={name: qaf, bits: 8}",), "int8", "QAF, CP rank ratio 2, 8-bit factors (activations float in training)"),
    "qaf_w6": Variant(("method={name: qaf, bits: 6}",), "int8", "QAF, CP rank ratio 2, 6-bit factors (activations float in training)"),
    "qaf_w4": Variant(("method={name: qaf, bits: 4}",), "int8", "QAF, CP rank ratio 2, 4-bit factors (activations float in training)"),
}
SHARED = ("data.augment=false",)  # the quantized runs' recipe beside the config (as the BiTAT benchmark)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds [default: 0,1,2]")
    p.add_argument("--only", default=",".join(VARIANTS),
                   help=f"comma-separated subset to train and convert: {', '.join(VARIANTS)} (the table lists all)")
    p.add_argument("--stage", choices=("train", "convert", "table", "all"), default="all",
                   help="train only, train and convert, only rebuild the table from existing runs, or everything")
    p.add_argument("--jobs", type=int, default=1, help="runs trained/converted at once [default: 1]")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "fmnist_bitat.yaml", help="the quantized runs' config")
    p.add_argument("--float-config", type=Path, default=REPO / "configs" / "fmnist_float.yaml",
                   help="the float row's config (seeds other than --float-run's)")
    p.add_argument("--float-run", type=Path, default=REPO / "runs" / "fmnist_float",
                   help="the finished float run: initialisation and teacher of every run")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "bench_methods_fmnist", help="parent of the run dirs")
    p.add_argument("--results", type=Path, default=REPO / "results", help="where the CSV and markdown go")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run; repeatable")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    args.only = [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in args.only if v not in VARIANTS]
    if unknown:
        p.error(f"--only: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if not (args.float_run / "checkpoints" / "best.pt").is_file():
        p.error(f"--float-run {args.float_run} has no checkpoints/best.pt; run `make train-float` first")
    for config in (args.config, args.float_config):
        if not config.is_file():
            p.error(f"config {config} not found")
    try:
        args.float_seed = int(yaml.safe_load((args.float_run / "config.yaml").read_text(encoding="utf-8"))["seed"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        p.error(f"--float-run {args.float_run}: its config.yaml does not say which seed it was trained with")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    return args


def _rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


def run_dir(variant: str, seed: int, args: argparse.Namespace) -> Path:
    """Where the run is: the float row at --float-run's seed is that run."""
    if not VARIANTS[variant].quantized and seed == args.float_seed:
        return args.float_run
    return args.runs / f"{variant}_s{seed}"


def train_command(variant: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The train CLI call of one run (its overrides decide whether ``--reuse`` keeps a finished run)."""
    v = VARIANTS[variant]
    teacher = _rel(args.float_run / "checkpoints" / "best.pt")
    start = (*SHARED, f"model.init_from={teacher}", f"distill.teacher={teacher}") if v.quantized else ()
    overrides = [f"seed={seed}", *start, *args.overrides, *v.overrides, f"name={variant}_s{seed}", "run.progress=false"]
    config = args.config if v.quantized else args.float_config
    cmd = [sys.executable, "-m", "train.cli", "run", "--config", _rel(config), "--out",
           _rel(run_dir(variant, seed, args)), "--reuse"]
    for o in overrides:
        cmd += ["--set", o]
    return cmd


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _call(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        return subprocess.run(cmd, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False).returncode


def train_one(variant: str, seed: int, args: argparse.Namespace) -> int:
    out = run_dir(variant, seed, args)
    if out == args.float_run:
        return 0  # finished before this benchmark (the --float-run check), kept as it is
    _log(f"train {variant} seed {seed}: {_rel(out)}")
    code = _call(train_command(variant, seed, args), args.runs / "logs" / f"{variant}_s{seed}.train.log")
    _log(f"train {variant} seed {seed}: exit {code}")
    return code


def convert_one(variant: str, seed: int, args: argparse.Namespace) -> int:
    """``bitat-edge convert run`` on a finished run (kept when its report is newer than its ONNX); a run
    whose export was interrupted (summary written, manifest missing) is exported again first."""
    out = run_dir(variant, seed, args)
    report = out / "deploy" / "report.json"
    if (out / "summary.json").is_file() and not (out / "manifest.json").is_file():
        _log(f"export {variant} seed {seed}")
        log = args.runs / "logs" / f"{variant}_s{seed}.export.log"
        if _call([sys.executable, "-m", "train.cli", "export", _rel(out)], log):
            return 1
    if not (out / "model.onnx").is_file():
        return 1
    if report.is_file() and report.stat().st_mtime > (out / "model.onnx").stat().st_mtime:
        return 0
    _log(f"convert {variant} seed {seed}")
    cmd = [sys.executable, "-c", "from bitat_edge.cli import main; main()", "convert", "run", _rel(out)]
    code = _call(cmd, args.runs / "logs" / f"{variant}_s{seed}.convert.log")
    _log(f"convert {variant} seed {seed}: exit {code}")
    return code


def build_one(variant: str, seed: int, args: argparse.Namespace) -> int:
    """Train one run, then (unless ``--stage train``) convert it, so each finished run is deployed at once."""
    code = train_one(variant, seed, args)
    return code if code or args.stage == "train" else convert_one(variant, seed, args)


# -- the table -------------------------------------------------------------------------------------

FIELDS = ["method", "seed", "precision", "deployed_as", "torch_top1", "deployed_top1", "agreement", "deployed_bytes",
          "low_bit_weight_bytes", "int8_weight_bytes", "macs", "bops", "binary_layers", "binary_intent",
          "grid_convs", "grid_exact", "epochs", "steps", "train_seconds", "teacher_top1", "status", "source", "run_dir"]
ENGINE = {"lce": "lce", "fp32": "tflite_fp32", "int8": "tflite_int8"}


def _bits(precision: str) -> tuple[int, int]:
    if precision == "float":
        return 32, 32
    w, a = precision[1:].split("a")
    return int(w), int(a)


def _cost(report: dict, deployed_as: str) -> dict[str, int]:
    """MACs of every weight layer, BOPs (MACs x weight bits x input bits of every layer that runs quantized,
    at its trained precision: float layers count in an int8 model at 8 x 8; in LCE and int16x8 they run in
    float), weight bytes packed at each layer's bits (float layers at 4 bytes in LCE and int16x8, 1 byte in
    int8) and at 8 bits, biases as float32."""
    macs = bops = low_bit = int8 = 0
    for layer in report["layers"]["layers"]:
        w, a = _bits(layer["precision"])
        layer_macs = layer["macs"] if layer["precision"] == "float" else layer["bops"] // (w * a)
        if layer["precision"] == "float":
            w, a = (8, 8) if deployed_as == "int8" else (32, 32)
        macs += layer_macs
        bops += layer_macs * w * a if w < 32 else 0
        low_bit += layer["params"] * w / 8 + 4 * layer["bias_params"]
        int8 += layer["params"] + 4 * layer["bias_params"]
    return {"macs": macs, "bops": bops, "low_bit_weight_bytes": round(low_bit), "int8_weight_bytes": int8}


def _precision(report: dict) -> str:
    """The precision of the quantized layers (the most common non-float one), e.g. w1a1 or w2a2."""
    counts: dict[str, int] = {}
    for layer in report["layers"]["layers"]:
        if layer["precision"] != "float":
            counts[layer["precision"]] = counts.get(layer["precision"], 0) + 1
    return max(counts, key=counts.get) if counts else "float"


def _deployed_as(report: dict, kind: str) -> str:
    """What the deployed flatbuffer is: ``lce``, ``fp32``, or the integer form of the ``int8`` model (``int8``
    in reports written before the form was recorded)."""
    return report.get("int8_form", "int8") if kind == "int8" else kind


def _teacher_top1(run: Path) -> float | str:
    """Test top-1 of the teacher the run distilled from (its config's ``distill.teacher``), "" when unknown:
    the teacher is re-trained on every fresh machine and not bit-identical across machines."""
    try:
        teacher = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["distill"]["teacher"]
        summary = json.loads((REPO / teacher).parents[1].joinpath("summary.json").read_text(encoding="utf-8"))
        return round(100 * float(summary["test_top1"]), 2)
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return ""


def method_row(variant: str, seed: int, args: argparse.Namespace) -> dict[str, object]:
    """One CSV row from a trained and converted run."""
    out = run_dir(variant, seed, args)
    row: dict[str, object] = {"method": variant, "seed": seed, "run_dir": _rel(out), "source": "trained here"}
    summary, report_path = out / "summary.json", out / "deploy" / "report.json"
    if not summary.is_file():
        return row | {"status": "not trained"}
    if not report_path.is_file():
        return row | {"status": "not converted"}
    s = json.loads(summary.read_text(encoding="utf-8"))
    report = json.loads(report_path.read_text(encoding="utf-8"))
    engines = report["parity"]["engines"]
    deployed = engines[ENGINE[VARIANTS[variant].deploy]]
    grids = report.get("int8_grids", {})
    deployed_as = _deployed_as(report, VARIANTS[variant].deploy)
    row.update(deployed_as=deployed_as, precision=_precision(report), torch_top1=round(100 * engines["pytorch"]["top1"], 2),
               deployed_top1=round(100 * deployed["top1"], 2), agreement=round(100 * deployed["agreement"], 2),
               deployed_bytes=report["sizes_bytes"][ENGINE[VARIANTS[variant].deploy]],
               binary_layers=report["lce_bconv2d"], binary_intent=report["layers"]["binary_intent"],
               grid_convs=grids.get("grid_convs", 0), grid_exact=grids.get("exact", 0), epochs=s["epochs"], steps=s["steps"],
               train_seconds=round(s["train_seconds"], 1), teacher_top1=_teacher_top1(out), status="ok",
               **_cost(report, deployed_as))
    return row


def earlier_rows(args: argparse.Namespace) -> dict[tuple[str, int], dict[str, object]]:
    """The rows measured by this benchmark in the table already in ``--results``, by (variant, seed)."""
    path = args.results / "methods_fmnist.csv"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as handle:
        return {(r["method"], int(r["seed"])): r for r in csv.DictReader(handle)
                if r["method"] in VARIANTS and r["status"] == "ok" and r["source"] == "trained here"}


def method_rows(args: argparse.Namespace) -> list[dict[str, object]]:
    """Every variant at every seed asked for or already in the table: measured from its run directory, else
    the table's earlier row (run directories of earlier machines are gone; results/ is the record), else
    the row saying what is missing."""
    earlier = earlier_rows(args)
    seeds = sorted(set(args.seeds) | {seed for _, seed in earlier})
    rows = []
    for variant in VARIANTS:
        for seed in seeds:
            row = method_row(variant, seed, args)
            rows.append(row if row["status"] == "ok" else earlier.get((variant, seed), row))
    return rows


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def _config_epochs(args: argparse.Namespace) -> int:
    return int(yaml.safe_load(args.config.read_text(encoding="utf-8"))["optim"]["epochs"])


def _budget(row: dict[str, object]) -> str:
    return f"{row['epochs']} ep" + (f" / {row['steps']} steps" if row.get("steps") else "")


def to_markdown(rows: list[dict[str, object]], args: argparse.Namespace) -> str:
    """One line per method: mean +/- sd over seeds of each figure (sizes and costs are per model)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    lines = [
        "All methods on the default Fashion-MNIST net (ReActNet-style) with the recipe of `configs/fmnist_bitat.yaml` "
        f"(AdamW, linear decay, from the float model with its distillation); its budget is {_config_epochs(args)} epochs: "
        "rows with fewer steps than the full rows were cut short by `run.max_steps` and are not at equal budget. Generated by "
        "benchmarks/methods_fmnist.py from results/methods_fmnist.csv. Top-1 on the 10,000 test images, mean +/- sd over seeds; *deployed*: the "
        "flatbuffer that is the deployment (W1A1: LCE, run by the LCE interpreter; float: the fp32 TFLite model; "
        "otherwise the integer TFLite model, run by the TFLite interpreter) on the host; *deployed as* names it: `lce`, `int16x8` (grid convs with int16 "
        "activations x int8 weights holding the grids exactly, the ops between them in float) or `int8` (every tensor "
        "int8); agreement: its top-1 predictions vs PyTorch's (lowest over seeds). "
        "Bytes: the deployed file; weights packed at each layer's bits (float layers: 4 bytes in LCE and int16x8, 1 in "
        "int8). MACs of all weight layers; BOPs = MACs x weight bits x input bits over the layers that run quantized, "
        "at each layer's trained precision (the int16 activations of the int16x8 form are not counted as 16-bit; "
        "float layers count at 8 x 8 in int8, not at all where they run in float). "
        "The float row runs the float config (its own epochs; deployed as the fp32 TFLite model); its run at the "
        "teacher's seed is the teacher itself. Rows accumulate over sessions: a row whose run directory is gone is kept from the CSV; "
        "every machine re-trains the float teacher, which is not bit-identical across machines (its top-1 per "
        "row: the CSV's teacher_top1).",
        "",
        "| method | precision | budget | deployed as | PyTorch top-1 % | deployed top-1 % | agreement % | deployed bytes | "
        "weights packed (int8) bytes | MACs | BOPs | binary / grid layers | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in VARIANTS:
        runs = [r for r in ok if r["method"] == method]
        if not runs:
            continue
        first = runs[0]
        torch_top1 = mean_sd([float(r["torch_top1"]) for r in runs])
        deployed = mean_sd([float(r["deployed_top1"]) for r in runs])
        agreement = f"{min(float(r['agreement']) for r in runs):.2f}"
        packed = f"{first['low_bit_weight_bytes']}"
        if VARIANTS[method].deploy == "lce":
            layers = f"{first['binary_layers']} LceBconv2d of {first['binary_intent']}"
        elif VARIANTS[method].deploy == "fp32":
            layers = "all float"
        else:
            layers = f"{first['grid_exact']} of {first['grid_convs']} grids exact"
            packed += f" ({first['int8_weight_bytes']})"
        deployed_as = "/".join(sorted({str(r["deployed_as"]) for r in runs}))
        lines.append(f"| {method} | {first['precision']} | {_budget(first)} | {deployed_as} | {torch_top1} | {deployed} | "
                     f"{agreement} | {first['deployed_bytes']} | {packed} | {_human(float(first['macs']))} | "
                     f"{_human(float(first['bops']))} | {layers} | {','.join(str(r['seed']) for r in runs)} |")
    lines += ["", "Rows: " + "; ".join(f"{name}: {v.what}" for name, v in VARIANTS.items()) + "."]
    missing = [r for r in rows if r.get("status") != "ok"]
    if missing:
        lines += ["", "Missing: " + "; ".join(f"{r['method']} seed {r['seed']} ({r['status']})" for r in missing)]
    lines += ["", f"Run directories: {_rel(args.runs)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = [(v, s) for s in args.seeds for v in args.only]
    failed = 0
    if args.stage != "table":
        with ThreadPoolExecutor(args.jobs) as pool:
            failed += sum(code != 0 for code in pool.map(lambda job: build_one(*job, args), jobs))
    if args.stage in ("table", "all"):
        rows = method_rows(args)
        write_text(args.results / "methods_fmnist.csv", csv_text(rows, FIELDS))
        write_text(args.results / "methods_fmnist.md", to_markdown(rows, args))
        print(to_markdown(rows, args))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
