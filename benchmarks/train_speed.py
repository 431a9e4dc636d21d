"""Benchmark: training throughput of the default float and BiTAT runs on this machine, before and
after the speed settings, one setting at a time, in one process.

Each variant is a real ``train.engine.Trainer`` built from a config plus overrides; the script
times its optimizer steps (data loading, teacher, method, forward, backward, update) after a
warm-up, in rounds that visit every variant in turn so that a change in machine load hits all of
them alike; a variant's figure is the median over rounds. BiTAT is timed in its all-binary phase
(the bulk of its steps); reaching it runs every stage's calibration, which is timed separately, as
are the teacher-logit table, one validation pass and an epoch of the data loader alone.
``--compile`` adds ``torch.compile`` of the BiTAT step (first-step compile time and steady rate).

Writes ``results/train_speed.json`` (and the generated ``results/train_speed.md``).

    .venv/bin/python benchmarks/train_speed.py --float-run runs/fmnist_float
    .venv/bin/python benchmarks/train_speed.py --float-run runs/fmnist_float --steps 4 --rounds 1   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from bitat_edge.atomic import write_json, write_text
from train.checkpoint import CheckpointError
from train.config import ConfigError, load_config
from train.data import DatasetError, build_datasets
from train.distributed import DistEnv
from train.engine import Trainer, evaluate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_THREADS = torch.get_num_threads()  # torch's default, before any variant sets its own
# The settings before this benchmark's changes (the previous defaults).
BEFORE = ["run.threads=null", "run.channels_last=false"]
BITAT_BEFORE = [*BEFORE, "data.augment=true"]
# name -> (config, overrides): one setting changed at a time from the committed defaults.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "float_before": ("float", BEFORE),
    "float_after": ("float", []),
    "float_1_thread": ("float", ["run.threads=1"]),
    "bitat_before": ("bitat", BITAT_BEFORE),
    "bitat_after": ("bitat", []),
    "bitat_nchw": ("bitat", ["run.channels_last=false"]),
    "bitat_teacher_every_step": ("bitat", ["data.augment=true"]),
    "bitat_1_thread": ("bitat", ["run.threads=1"]),
    "bitat_no_rotation": ("bitat", ["method.rotation=false"]),
    "ste_after": ("bitat", ["method={name: ste}"]),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--float-run", type=Path, required=True,
                   help="a finished float run: the BiTAT runs' init and teacher (e.g. runs/fmnist_float)")
    p.add_argument("--float-config", type=Path, default=REPO / "configs" / "fmnist_float.yaml")
    p.add_argument("--bitat-config", type=Path, default=REPO / "configs" / "fmnist_bitat.yaml")
    p.add_argument("--steps", type=int, default=12, help="timed steps per variant and round [default: 12]")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each timing [default: 3]")
    p.add_argument("--rounds", type=int, default=3, help="rounds over all variants [default: 3]")
    p.add_argument("--only", default=",".join(VARIANTS), help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every variant; repeatable")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the BiTAT step (minutes)")
    p.add_argument("--results", type=Path, default=REPO / "results", help="where train_speed.json/.md go")
    args = p.parse_args(argv)
    checkpoint = args.float_run / "checkpoints" / "best.pt"
    if not checkpoint.is_file():
        p.error(f"--float-run {args.float_run} has no checkpoints/best.pt; train the float model first (make train-float)")
    args.teacher = checkpoint
    for path in (args.float_config, args.bitat_config):
        if not path.is_file():
            p.error(f"config {path} not found; pass --float-config/--bitat-config")
    args.only = [v.strip() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in args.only if v not in VARIANTS]
    if unknown:
        p.error(f"--only: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    if min(args.steps, args.rounds) < 1 or args.warmup < 0:
        p.error("--steps and --rounds must be >= 1, --warmup >= 0")
    return args


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


class Variant:
    """A ``Trainer`` in the phase to time, and a step loop over its first epoch's batches."""

    def __init__(self, name: str, args: argparse.Namespace, workdir: Path) -> None:
        kind, overrides = VARIANTS[name]
        self.name = name
        self.overrides = overrides
        config = args.float_config if kind == "float" else args.bitat_config
        extra = [] if kind == "float" else [f"model.init_from={args.teacher}", f"distill.teacher={args.teacher}"]
        self.cfg = load_config(config, [*extra, *args.overrides, *overrides, "run.progress=false"])
        self.threads = self.cfg.run.threads or DEFAULT_THREADS
        torch.set_num_threads(self.threads)
        self.trainer = Trainer(self.cfg, workdir / name, DistEnv(), torch.device("cpu"))
        t = self.trainer
        t.model.train()
        loader, self.batches = t._loader(0, 0)
        self.loader = iter(loader)
        self.position = 0
        # Enter the phase to time: every layer binary for the quantized methods (calibration timed).
        schedule = getattr(t.method, "schedule", None)
        t.global_step = schedule.finetune_start if schedule is not None else 0
        _, self.calibration_seconds = timed(lambda: t.method.on_step_start(t.global_step, t.model, t.ctx))

    def steps(self, n: int) -> float:
        """Run ``n`` optimizer steps; return the seconds they took (loading included)."""
        t = self.trainer
        torch.set_num_threads(self.threads)
        started = time.perf_counter()
        for _ in range(n):
            x, y = next(self.loader)
            indices = self.batches[self.position]
            t._step(x.contiguous(memory_format=t.memory_format), y, indices)
            t.global_step += 1
            self.position += 1
        return time.perf_counter() - started


def loader_seconds_per_image(cfg_path: Path, overrides: list[str], augment: bool, images: int) -> float:
    """Seconds per training image spent in the data loader alone (augmentation on or off)."""
    cfg = load_config(cfg_path, [*overrides, f"data.augment={str(augment).lower()}"])
    train = build_datasets(cfg.data, cfg.seed).train
    images = min(images, len(train))
    loader = DataLoader(Subset(train, range(images)), batch_size=cfg.data.batch_size)
    _, seconds = timed(lambda: sum(1 for _ in loader))
    return seconds / images


def compile_measurement(variant: Variant, steps: int) -> dict[str, float]:
    """``torch.compile`` (inductor) of the model: first-step (compile) time and steady images/s."""
    t = variant.trainer
    eager = t.ddp
    t.ddp = torch.compile(t.model)
    try:
        first = variant.steps(1)
        rate = steps * t.batch_size / variant.steps(steps)
    finally:
        t.ddp = eager
    return {"first_step_seconds": round(first, 1), "images_per_s": round(rate, 1)}


def to_markdown(result: dict[str, Any]) -> str:
    v = result["variants"]
    lines = [
        "Training throughput on this machine (generated by benchmarks/train_speed.py from results/train_speed.json). "
        f"Median images/s over {result['rounds']} rounds of {result['steps']} steps; {result['machine']}, "
        f"load average {result['load_average_start']} at the start, {result['load_average_end']} at the end "
        "(other work shared the cores; compare rows of one run, not across runs).",
        "",
        "| variant | what changes | images/s | vs before |",
        "|---|---|---|---|",
    ]
    for name, row in v.items():
        base = v.get(f"{VARIANTS[name][0]}_before")  # the same config's previous settings
        ratio = f"{row['images_per_s'] / base['images_per_s']:.2f}x" if base else "n/a"
        lines.append(f"| {name} | {', '.join(row['overrides']) or 'committed defaults'} | "
                     f"{row['images_per_s']:.1f} | {ratio} |")
    once = result["one_time_seconds"]
    lines += ["", "One-time costs (s): " + ", ".join(f"{k} {val}" for k, val in once.items()) + "."]
    if "compile" in result:
        c = result["compile"]
        lines.append(f"torch.compile (inductor, CPU) of the BiTAT model: first step {c['first_step_seconds']} s, then "
                     f"{c['images_per_s']} images/s (eager in the same rounds: {v['bitat_after']['images_per_s']:.1f}).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return measure(args)
    except (ConfigError, CheckpointError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def measure(args: argparse.Namespace) -> int:
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        variants = {name: Variant(name, args, Path(tmp)) for name in args.only}
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for variant in variants.values():
            variant.steps(args.warmup)
        for round_ in range(args.rounds):
            for name, variant in variants.items():
                seconds = variant.steps(args.steps)
                rates[name].append(args.steps * variant.trainer.batch_size / seconds)
            print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{n} {r[-1]:.0f}" for n, r in rates.items()),
                  flush=True)
        any_bitat = next((v for v in variants.values() if v.cfg.method.name != "float"), None)
        any_float = next((v for v in variants.values() if v.cfg.method.name == "float"), None)
        one_time: dict[str, float] = {}
        if any_bitat is not None:
            one_time["bitat_calibration_all_stages"] = round(any_bitat.calibration_seconds, 1)
        table = next((v.trainer.teacher_table for v in variants.values() if v.trainer.teacher_table), None)
        if table is not None:
            one_time["teacher_table"] = round(table.seconds, 1)
        if any_float is not None:
            t = any_float.trainer
            _, seconds = timed(lambda: evaluate(t.model, t.splits.val, t.cfg.data.eval_batch_size, t.device, t.env))
            one_time["validation_pass_float"] = round(seconds, 1)
        for augment in (False, True):
            per_image = loader_seconds_per_image(args.float_config, args.overrides, augment, 4096)
            epoch_images = len(any_float.trainer.splits.train) if any_float else 54000
            one_time[f"loader_epoch_augment_{str(augment).lower()}"] = round(per_image * epoch_images, 1)
        result: dict[str, Any] = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "steps": args.steps,
            "rounds": args.rounds,
            "load_average_start": load_start,
            "variants": {
                name: {
                    "config": v.cfg.method.name,
                    "overrides": v.overrides,
                    "threads": v.threads,
                    "channels_last": v.cfg.run.channels_last,
                    "teacher_table": v.trainer.teacher_table is not None,
                    "images_per_s": round(statistics.median(rates[name]), 1),
                    "images_per_s_rounds": [round(r, 1) for r in rates[name]],
                }
                for name, v in variants.items()
            },
            "one_time_seconds": one_time,
        }
        if args.compile and "bitat_after" in variants:
            result["compile"] = compile_measurement(variants["bitat_after"], args.steps)
        result["load_average_end"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    write_json(args.results / "train_speed.json", result)
    write_text(args.results / "train_speed.md", to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
