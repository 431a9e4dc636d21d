"""Benchmark: BiTAT vs the float model, plain STE, the strongest STE recipe and BiTAT minus each
of its components on Fashion-MNIST, at the same epoch budget and seeds.

Every run goes through the train CLI in its own subprocess and run directory (``--reuse``: a
finished run is kept, an interrupted one resumes). One float run is the teacher and the starting
point of every quantized run (``--float-run``, else the float run of the first seed), so rows
differ only in the method; the float row has its own run per seed. Quantized runs share the
recipe of ``configs/fmnist_bitat.yaml`` (data, optimizer, KD); the STE rows replace its method
section. Writes ``results/bitat_fmnist.csv`` and the generated ``results/bitat_fmnist.md`` (paths in
them relative to the repository root).

    .venv/bin/python benchmarks/bitat_fmnist.py --float-run runs/fmnist_float --seeds 0,1,2
    .venv/bin/python benchmarks/bitat_fmnist.py --only float,bitat --set data.eval_limit=500
    .venv/bin/python benchmarks/bitat_fmnist.py --epochs 20 --seeds 0,1,2 --runs runs/bench_gpu   # a GPU budget

``--set`` overrides go to every run, except ``method.*`` keys, which go to the BiTAT variants only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bitat_edge.atomic import write_text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.tables import csv_text, mean_sd  # noqa: E402

FIELDS = ["method", "seed", "epochs", "top1", "val_top1", "test_images", "wall_seconds", "train_seconds", "device",
          "status", "run_dir"]
# name -> (config key, overrides beyond the shared ones)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "float": ("float", []),
    "ste": ("bitat", ["method={name: ste}", "data.augment=true"]),
    "ste_best": ("bitat", ["method={name: ste}"]),
    "bitat": ("bitat", []),
    "bitat_no_rotation": ("bitat", ["method.rotation=false"]),
    "bitat_no_importance": ("bitat", ["method.importance=false"]),
    "bitat_no_progression": ("bitat", ["method.progressive=false"]),
}
DESCRIPTIONS = {
    "float": "float model (one run per seed; the seed-0 run is every quantized run's teacher and init)",
    "ste": "plain STE: every eligible layer binary at step 0, the issue-3 recipe (augmentation on), same KD and init",
    "ste_best": "strongest STE recipe measured: the shared recipe (no augmentation, KD 0.9, no weight decay, lr 2e-3)",
    "bitat": "BiTAT: progression + trained rotation + importance",
    "bitat_no_rotation": "BiTAT without the trained rotation (importance term on the latent weights)",
    "bitat_no_importance": "BiTAT with the identity metric instead of U diag(lambda) U^T",
    "bitat_no_progression": "BiTAT with every layer binary at step 0",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every quantized run [default: the BiTAT config's optim.epochs]")
    p.add_argument("--seeds", default="0", help="comma-separated seeds [default: 0]")
    p.add_argument("--float-seeds", default=None,
                   help="comma-separated seeds of the float row, a subset of --seeds [default: --seeds]; e.g. only --float-run's seed when\n"
                        "there is no budget to train the other seeds' float models (the table shows the seeds used)")
    p.add_argument("--only", default=",".join(VARIANTS),
                   help=f"comma-separated subset of: {', '.join(VARIANTS)} (the teacher float run always runs)")
    p.add_argument("--float-config", type=Path, default=REPO / "configs" / "fmnist_float.yaml")
    p.add_argument("--bitat-config", type=Path, default=REPO / "configs" / "fmnist_bitat.yaml")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "bench_bitat_fmnist", help="parent of the run dirs")
    p.add_argument("--results", type=Path, default=REPO / "results", help="where the CSV and markdown go")
    p.add_argument("--float-run", type=Path, default=None,
                   help="a finished float run: the teacher and init of every quantized run and the float row\n"
                        "of its own seed (e.g. runs/fmnist_float from `make train`); other seeds' float rows\n"
                        "are trained")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (method.* keys: BiTAT variants only); repeatable")
    args = p.parse_args(argv)
    for name in ("seeds", "float_seeds"):
        given = getattr(args, name)
        if given is None:
            continue
        try:
            setattr(args, name, [int(s) for s in given.split(",") if s.strip()])
        except ValueError:
            p.error(f"--{name.replace('_', '-')} must be comma-separated integers, got {given!r}")
    if not args.seeds:
        p.error("--seeds: give at least one seed")
    if args.float_seeds is None:
        args.float_seeds = args.seeds
    if not set(args.float_seeds) <= set(args.seeds):
        p.error(f"--float-seeds {args.float_seeds} must be a subset of --seeds {args.seeds}")
    only = [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in only if v not in VARIANTS]
    if unknown:
        p.error(f"--only: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    args.only = [v for v in VARIANTS if v in only]
    args.float_seed = None
    if args.float_run is not None:
        if not (args.float_run / "summary.json").is_file():
            p.error(f"--float-run {args.float_run} is not a finished run (no summary.json)")
        try:
            args.float_seed = int(yaml.safe_load((args.float_run / "config.yaml").read_text(encoding="utf-8"))["seed"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
            p.error(f"--float-run {args.float_run}: its config.yaml does not say which seed it was trained with")
    for path in (args.float_config, args.bitat_config):
        if not path.is_file():
            p.error(f"config {path} not found; pass --float-config/--bitat-config")
    return args


def float_run_dir(seed: int, args: argparse.Namespace) -> Path:
    """Where the float run of ``seed`` is."""
    return args.float_run if seed == args.float_seed else args.runs / f"float_s{seed}"


def run_one(variant: str, seed: int, args: argparse.Namespace, teacher: Path) -> dict[str, object]:
    """Train one variant for one seed through the CLI (a finished run is reused); return its CSV row."""
    config_key, extra = VARIANTS[variant]
    config = args.float_config if config_key == "float" else args.bitat_config
    run_dir = float_run_dir(seed, args) if variant == "float" else args.runs / f"{variant}_s{seed}"
    shared = [o for o in args.overrides if not (o.startswith("method.") and not variant.startswith("bitat"))]
    overrides = [f"seed={seed}", *shared, *extra]
    if run_dir != args.float_run:
        overrides.append("run.export=false")  # the table needs no deploy files (a given float run is kept as is)
    if variant != "float":
        overrides += [f"model.init_from={teacher}", f"distill.teacher={teacher}"]
        if args.epochs is not None:
            overrides.append(f"optim.epochs={args.epochs}")
    cmd = [sys.executable, "-m", "train.cli", "run", "--config", str(config), "--out", str(run_dir), "--reuse"]
    for o in overrides:
        cmd += ["--set", o]
    print(f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed}: {run_dir}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    row: dict[str, object] = {"method": variant, "seed": seed, "run_dir": os.path.relpath(run_dir, REPO), "status": "ok"}
    summary_path = run_dir / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        row.update(status=f"failed (exit {proc.returncode})", wall_seconds=round(time.perf_counter() - started, 1))
        return row
    s = json.loads(summary_path.read_text(encoding="utf-8"))
    row.update(epochs=s["epochs"], top1=round(100 * s["test_top1"], 2), val_top1=round(100 * s["val_best_top1"], 2),
               test_images=s["test_images"], wall_seconds=round(s["wall_seconds"], 1),
               train_seconds=round(s["train_seconds"], 1), device=s["device"])
    return row


def to_markdown(rows: list[dict[str, object]]) -> str:
    """Per variant: mean +/- sd over seeds of test top-1, the gaps to float and to the best STE recipe."""
    ok = [r for r in rows if r["status"] == "ok"]
    top1 = {v: [float(r["top1"]) for r in ok if r["method"] == v] for v in VARIANTS}
    means = {v: statistics.mean(t) for v, t in top1.items() if t}
    images = sorted({str(r["test_images"]) for r in ok}) or ["the"]
    lines = [
        "BiTAT on Fashion-MNIST (generated by benchmarks/bitat_fmnist.py from results/bitat_fmnist.csv). "
        f"Top-1 % on the {'/'.join(images)} test images of each run's best checkpoint (best = highest validation top-1 "
        "among deploy-form epochs), mean +/- sample sd over seeds. W1A1 on every eligible conv (stem and "
        "classifier float); every quantized run starts from, and distills from, the same float model.",
        "",
        "| method | what | top-1 % | vs float (pts) | vs ste_best (pts) | val top-1 % | wall (s) | seeds | epochs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        runs = [r for r in ok if r["method"] == variant]
        if not runs:
            continue
        gap = {ref: f"{means[variant] - means[ref]:+.2f}" if ref in means else "n/a" for ref in ("float", "ste_best")}
        lines.append(
            f"| {variant} | {DESCRIPTIONS[variant]} | {mean_sd(top1[variant])} | {gap['float']} | {gap['ste_best']} | "
            f"{mean_sd([float(r['val_top1']) for r in runs])} | "
            f"{statistics.mean(float(r['wall_seconds']) for r in runs):.0f} | "
            f"{','.join(str(r['seed']) for r in runs)} | {runs[0]['epochs']} |"
        )
    if {"bitat", "ste_best", "float"} <= set(means):
        lines += ["", f"Goals: BiTAT >= ste_best + 1.0: {means['bitat'] - means['ste_best']:+.2f} points "
                      f"({'met' if means['bitat'] - means['ste_best'] >= 1.0 else 'NOT met'}); BiTAT within 1.5 of float: "
                      f"{means['bitat'] - means['float']:+.2f} points "
                      f"({'met' if means['float'] - means['bitat'] <= 1.5 else 'NOT met'}; moonshot 0.5)."]
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(f"{r['method']} seed {r['seed']} ({r['status']})" for r in failed)]
    devices = sorted({str(r["device"]) for r in ok})
    lines += ["", f"Device(s): {', '.join(devices) or 'n/a'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[dict[str, object]] = []

    def record(row: dict[str, object]) -> None:
        rows.append(row)
        write_text(args.results / "bitat_fmnist.csv", csv_text(rows, FIELDS))
        write_text(args.results / "bitat_fmnist.md", to_markdown(rows))

    teacher_seed = args.float_seed if args.float_seed is not None else args.seeds[0]
    teacher_run = float_run_dir(teacher_seed, args)
    if args.float_run is None:
        row = run_one("float", teacher_seed, args, teacher_run)
        if row["status"] != "ok":
            record(row)
            print(f"the teacher float run (seed {teacher_seed}) failed; nothing else can run", file=sys.stderr)
            return 1
        if "float" in args.only and teacher_seed in args.float_seeds:
            record(row)
    teacher = teacher_run / "checkpoints" / "best.pt"
    for seed in args.seeds:
        for variant in args.only:
            if variant == "float" and (seed not in args.float_seeds or (seed == teacher_seed and args.float_run is None)):
                continue  # not asked for, or recorded above
            record(run_one(variant, seed, args, teacher))
    print(to_markdown(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
