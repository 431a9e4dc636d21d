"""Benchmark: the default float training (``make train-float``) on this machine.

Runs ``bitat-edge train run --config configs/fmnist_float.yaml --out RUN --no-resume`` in a
subprocess, measures its wall time and peak memory (the child's peak RSS from
``getrusage(RUSAGE_CHILDREN)``), reads the test top-1 on the Fashion-MNIST test images from the
run's ``summary.json``, and writes ``results/float_fmnist.json`` and the generated
``results/float_fmnist.md`` (goal: >= 92.5 % top-1 in <= 10 minutes). The command runs in the
repository root; the paths it and the record name are relative to it.

    .venv/bin/python benchmarks/float_fmnist.py
    .venv/bin/python benchmarks/float_fmnist.py --set optim.epochs=1 --results /tmp/r   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from bitat_edge.atomic import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
GOAL_TOP1 = 92.5  # percent, on the 10,000 test images
GOAL_SECONDS = 600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=REPO / "configs" / "fmnist_float.yaml")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_float_fmnist",
                   help="run directory (trained from scratch: anything there is replaced)")
    p.add_argument("--results", type=Path, default=REPO / "results", help="where float_fmnist.json/.md go")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override passed to the training run; repeatable")
    args = p.parse_args(argv)
    if not args.config.is_file():
        p.error(f"config {args.config} not found; pass --config")
    return args


def train_command() -> list[str]:
    """The console script of this environment (the one ``make train`` runs)."""
    beside = Path(sys.executable).with_name("bitat-edge")
    found = str(beside) if beside.is_file() else shutil.which("bitat-edge")
    if found is None:
        raise SystemExit("bitat-edge console script not found; install the package (make setup)")
    return [found, "train", "run"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": metadata.version("torch"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the training once and return the result record."""
    config, out = os.path.relpath(args.config, REPO), os.path.relpath(args.out, REPO)
    cmd = [*train_command(), "--config", config, "--out", out, "--no-resume"]
    for override in args.overrides:
        cmd += ["--set", override]
    print("running:", " ".join(cmd), flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, check=False)
    wall = time.perf_counter() - started
    peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # Linux: KiB
    summary_path = args.out / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        raise SystemExit(f"training failed (exit {proc.returncode}); see its output above")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    env = json.loads((args.out / "env.json").read_text(encoding="utf-8"))
    top1 = 100.0 * summary["test_top1"]
    return {
        "benchmark": "float_fmnist",
        "command": cmd[1:],
        "overrides": args.overrides,
        "config": config,
        "run_dir": out,
        "test_top1_percent": round(top1, 2),
        "test_images": summary["test_images"],
        "val_best_top1_percent": round(100.0 * summary["val_best_top1"], 2),
        "epochs": summary["epochs"],
        "steps": summary["steps"],
        "wall_seconds": round(wall, 1),
        "train_seconds": round(summary["train_seconds"], 1),
        "images_per_s": round(summary["images_per_s"], 1),
        "peak_rss_mib": round(peak_rss_mib, 1),
        "device": summary["device"],
        "goal": {"top1_percent": GOAL_TOP1, "wall_seconds": GOAL_SECONDS,
                 "met": top1 >= GOAL_TOP1 and wall <= GOAL_SECONDS},
        "git": env.get("git", {}),
        "machine": machine(),
    }


def to_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    shortened = f" Overrides: `{' '.join(r['overrides'])}`." if r["overrides"] else ""
    met = "met" if r["goal"]["met"] else "not met"
    rows = [
        ("test top-1 (best val checkpoint)", f"{r['test_top1_percent']:.2f} % of {r['test_images']} images"),
        ("wall time (whole command)", f"{r['wall_seconds']:.0f} s"),
        ("of which training steps", f"{r['train_seconds']:.0f} s ({r['images_per_s']:.0f} images/s)"),
        ("peak memory (RSS)", f"{r['peak_rss_mib']:.0f} MiB"),
        ("epochs / steps", f"{r['epochs']} / {r['steps']}"),
        ("goal >= 92.5 % in <= 10 min", met),
    ]
    lines = [
        "Default float training (`make train-float`, generated by benchmarks/float_fmnist.py from "
        "results/float_fmnist.json).",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        f"Machine: {m['cpu_count']} x {m['cpu_model']}, {m['platform']}, Python {m['python']}, torch {m['torch']}, "
        f"device {r['device']}; measured {m['date']}. Config `{r['config']}`.{shortened}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = measure(args)
    write_json(args.results / "float_fmnist.json", record)
    table = to_markdown(record)
    write_text(args.results / "float_fmnist.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
