"""Benchmark: BiTAT vs the float model, the ``ste`` baseline and BiTAT minus each component on
Fashion-MNIST, at the same epoch budget and seeds.

Every run goes through the train CLI in its own subprocess and run directory (``--reuse``: a
finished run is kept, an interrupted one resumes). The float run of a seed is also the teacher and
the starting point of that seed's quantized runs. Writes ``results/bitat_fmnist.csv`` and the
generated ``results/bitat_fmnist.md`` (paths in them relative to the repository root).

    .venv/bin/python benchmarks/bitat_fmnist.py --epochs 8 --seeds 0,1
    .venv/bin/python benchmarks/bitat_fmnist.py --only float,bitat --set data.eval_limit=500
    .venv/bin/python benchmarks/bitat_fmnist.py --float-run runs/fmnist_float   # reuse make train's teacher

``--set`` overrides go to every run, except ``method.*`` keys, which go to the BiTAT variants only.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bitat_edge.atomic import write_text

REPO = Path(__file__).resolve().parents[1]
FIELDS = ["method", "seed", "epochs", "top1", "test_images", "wall_seconds", "train_seconds", "device", "status",
          "run_dir"]
# name -> (config key, overrides beyond the shared ones, uses the float teacher for KD)
VARIANTS: dict[str, tuple[str, list[str], bool]] = {
    "float": ("float", [], False),
    "ste": ("bitat", ["method={name: ste}"], True),
    "bitat": ("bitat", [], True),
    "bitat_no_importance": ("bitat", ["method.importance=false"], True),
    "bitat_no_progression": ("bitat", ["method.progressive=false"], True),
    "bitat_no_distillation": ("bitat", [], False),
}
DESCRIPTIONS = {
    "float": "float model (the teacher and starting point)",
    "ste": "all eligible layers binary at step 0, STE, same KD and init",
    "bitat": "BiTAT, all components",
    "bitat_no_importance": "BiTAT, identity metric instead of U diag(lambda) U^T",
    "bitat_no_progression": "BiTAT, every layer binary at step 0",
    "bitat_no_distillation": "BiTAT, no teacher (CE only)",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every run (float and quantized) [default: each config's optim.epochs]")
    p.add_argument("--seeds", default="0", help="comma-separated seeds [default: 0]")
    p.add_argument("--only", default=",".join(VARIANTS),
                   help=f"comma-separated subset of: {', '.join(VARIANTS)} (float always runs: it is the teacher)")
    p.add_argument("--float-config", type=Path, default=REPO / "configs" / "fmnist_float.yaml")
    p.add_argument("--bitat-config", type=Path, default=REPO / "configs" / "fmnist_bitat.yaml")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "bench_bitat_fmnist", help="parent of the run dirs")
    p.add_argument("--results", type=Path, default=REPO / "results", help="where the CSV and markdown go")
    p.add_argument("--float-run", type=Path, default=None,
                   help="a finished float run to use as the teacher and float row (one seed only)\n"
                        "instead of training one, e.g. runs/fmnist_float from `make train`")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (method.* keys: BiTAT variants only); repeatable")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    only = [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in only if v not in VARIANTS]
    if unknown:
        p.error(f"--only: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    args.only = ["float", *[v for v in VARIANTS if v in only and v != "float"]]
    if args.float_run is not None:
        if len(args.seeds) != 1:
            p.error("--float-run serves one seed; pass a single --seeds value")
        if not (args.float_run / "summary.json").is_file():
            p.error(f"--float-run {args.float_run} is not a finished run (no summary.json)")
    for path in (args.float_config, args.bitat_config):
        if not path.is_file():
            p.error(f"config {path} not found; pass --float-config/--bitat-config")
    return args


def float_run_dir(seed: int, args: argparse.Namespace) -> Path:
    """Where the float run (the teacher) of ``seed`` is."""
    return args.float_run if args.float_run is not None else args.runs / f"float_s{seed}"


def run_one(variant: str, seed: int, args: argparse.Namespace, teacher: Path) -> dict[str, object]:
    """Train one variant for one seed through the CLI (a finished run is reused); return its CSV row."""
    config_key, extra, distill = VARIANTS[variant]
    config = args.float_config if config_key == "float" else args.bitat_config
    run_dir = float_run_dir(seed, args) if variant == "float" else args.runs / f"{variant}_s{seed}"
    shared = [o for o in args.overrides if not (o.startswith("method.") and not variant.startswith("bitat"))]
    overrides = [f"seed={seed}", *shared, *extra]
    if args.epochs is not None:
        overrides.append(f"optim.epochs={args.epochs}")
    if variant != "float":
        overrides += [f"model.init_from={teacher}", f"distill.teacher={teacher if distill else 'null'}"]
    cmd = [sys.executable, "-m", "train.cli", "run", "--config", str(config), "--out", str(run_dir), "--reuse"]
    for o in overrides:
        cmd += ["--set", o]
    print(f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed}: {run_dir}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    row: dict[str, object] = {"method": variant, "seed": seed, "run_dir": os.path.relpath(run_dir, REPO),
                              "status": "ok"}
    summary_path = run_dir / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        row.update(status=f"failed (exit {proc.returncode})", wall_seconds=round(time.perf_counter() - started, 1))
        return row
    s = json.loads(summary_path.read_text(encoding="utf-8"))
    row.update(epochs=s["epochs"], top1=round(100 * s["test_top1"], 2), test_images=s["test_images"],
               wall_seconds=round(s["wall_seconds"], 1), train_seconds=round(s["train_seconds"], 1),
               device=s["device"])
    return row


def to_csv(rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in FIELDS})
    return buf.getvalue()


def to_markdown(rows: list[dict[str, object]]) -> str:
    """Per variant: mean (and spread over seeds) of test top-1, the gap to float, wall time."""
    ok = [r for r in rows if r["status"] == "ok"]
    float_top1 = [float(r["top1"]) for r in ok if r["method"] == "float"]
    ref = statistics.mean(float_top1) if float_top1 else None
    lines = [
        "BiTAT on Fashion-MNIST (generated by benchmarks/bitat_fmnist.py from results/bitat_fmnist.csv). "
        "Top-1 on the test images of each run's best checkpoint; W1A1 on every eligible conv "
        "(stem and classifier float); every quantized run starts from the float model. Mean over seeds, "
        "+/- the sample standard deviation when there are several.",
        "",
        "| method | what | top-1 % | vs float (pts) | wall time (s) | seeds | epochs | images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        runs = [r for r in ok if r["method"] == variant]
        if not runs:
            continue
        top1 = [float(r["top1"]) for r in runs]
        spread = f" +/- {statistics.stdev(top1):.2f}" if len(top1) > 1 else ""
        gap = f"{statistics.mean(top1) - ref:+.2f}" if ref is not None else "n/a"
        lines.append(
            f"| {variant} | {DESCRIPTIONS[variant]} | {statistics.mean(top1):.2f}{spread} | {gap} | "
            f"{statistics.mean(float(r['wall_seconds']) for r in runs):.0f} | "
            f"{','.join(str(r['seed']) for r in runs)} | {runs[0]['epochs']} | {runs[0]['test_images']} |"
        )
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(f"{r['method']} seed {r['seed']} ({r['status']})" for r in failed)]
    devices = sorted({str(r["device"]) for r in ok})
    lines += ["", f"Device(s): {', '.join(devices) or 'n/a'}. Run directories: {', '.join(sorted({str(Path(str(r['run_dir'])).parent) for r in rows}))}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[dict[str, object]] = []
    for seed in args.seeds:
        teacher = float_run_dir(seed, args) / "checkpoints" / "best.pt"
        for variant in args.only:
            row = run_one(variant, seed, args, teacher)
            rows.append(row)
            write_text(args.results / "bitat_fmnist.csv", to_csv(rows))
            write_text(args.results / "bitat_fmnist.md", to_markdown(rows))
            if variant == "float" and row["status"] != "ok":
                print(f"float run for seed {seed} failed; skipping its quantized runs", file=sys.stderr)
                break
    print(to_markdown(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
