"""Benchmark: UniQ, QuantNet and QAF beside float, STE and BiTAT on Fashion-MNIST at equal budget,
trained, deployed and measured on the host.

Every run goes through the train CLI (``--reuse``: a finished run is kept, an interrupted one
resumes) from the default quantized config (``configs/fmnist_bitat.yaml``: its epochs, optimizer,
schedule, distillation and float initialisation) with only the method swapped; then through
``bitat-edge convert run``. The W1A1 rows deploy the LCE flatbuffer, the others the int8 TFLite
one; both are run on the host over the whole test set by the converter's parity check. The float,
STE and BiTAT rows are not re-trained: they are read from ``results/bitat_fmnist.csv`` (the BiTAT
benchmark at the same budget). Writes ``results/methods_fmnist.csv`` and the generated
``results/methods_fmnist.md`` (paths relative to the repository root).

    .venv/bin/python benchmarks/methods_fmnist.py --seeds 0,1,2 --jobs 2
    .venv/bin/python benchmarks/methods_fmnist.py --only uniq_w1a1 --stage train
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    """One row: the method overrides, the deployed model kind and what the row is."""

    overrides: tuple[str, ...]
    deploy: str  # "lce" or "int8"
    what: str


VARIANTS: dict[str, Variant] = {
    "uniq_w1a1": Variant(("method={name: uniq, bits: 1}",), "lce", "UniQ, {0, Delta} activations as LCE +/-1"),
    "uniq_w2a2": Variant(("method={name: uniq, bits: 2}",), "int8", "UniQ 2-bit weights and activations"),
    "uniq_w4a4": Variant(("method={name: uniq, bits: 4}",), "int8", "UniQ 4-bit weights and activations"),
    "quantnet_w1a1": Variant(("method={name: quantnet}",), "lce", "QuantNet (our interpretation)"),
    "qaf_w8": Variant(("method={name: qaf, bits: 8}",), "int8", "QAF, CP rank ratio 2, 8-bit factors, A8"),
    "qaf_w6": Variant(("method={name: qaf, bits: 6}",), "int8", "QAF, CP rank ratio 2, 6-bit factors, A8"),
    "qaf_w4": Variant(("method={name: qaf, bits: 4}",), "int8", "QAF, CP rank ratio 2, 4-bit factors, A8"),
}
SHARED = ("data.augment=false",)  # the quantized runs' recipe beside the config (as the BiTAT benchmark)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds [default: 0,1,2]")
    p.add_argument("--only", default=",".join(VARIANTS), help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--stage", choices=("train", "convert", "table", "all"), default="all",
                   help="train only, train and convert, only rebuild the table from existing runs, or everything")
    p.add_argument("--jobs", type=int, default=1, help="runs trained/converted at once [default: 1]")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "fmnist_bitat.yaml")
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
    if not args.config.is_file():
        p.error(f"config {args.config} not found")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    return args


def _rel(path: Path) -> str:
    return os.path.relpath(path, REPO)


def run_dir(variant: str, seed: int, args: argparse.Namespace) -> Path:
    return args.runs / f"{variant}_s{seed}"


def train_command(variant: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The train CLI call of one run (its overrides decide whether ``--reuse`` keeps a finished run)."""
    teacher = _rel(args.float_run / "checkpoints" / "best.pt")
    overrides = [f"seed={seed}", *SHARED, *args.overrides, *VARIANTS[variant].overrides,
                 f"model.init_from={teacher}", f"distill.teacher={teacher}", f"name={variant}_s{seed}",
                 "run.progress=false"]
    cmd = [sys.executable, "-m", "train.cli", "run", "--config", _rel(args.config), "--out",
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
    _log(f"train {variant} seed {seed}: {_rel(out)}")
    code = _call(train_command(variant, seed, args), args.runs / "logs" / f"{variant}_s{seed}.train.log")
    _log(f"train {variant} seed {seed}: exit {code}")
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = [(v, s) for s in args.seeds for v in args.only]
    failed = 0
    if args.stage in ("train", "convert", "all"):
        with ThreadPoolExecutor(args.jobs) as pool:
            failed += sum(code != 0 for code in pool.map(lambda job: train_one(*job, args), jobs))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
