"""The run directory: file layout, environment record, metrics table, summary, and what a directory holds.

```
runs/<name>/config.yaml   resolved config, written before training
            env.json      versions, machine, seed, git revision, command line, start time
            metrics.csv   one row per epoch
            checkpoints/last.pt, checkpoints/best.pt
            summary.json  test top-1 of best.pt and run totals (present = the run finished)
            tb/           TensorBoard events (optional)
```
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitat_edge.atomic import write_json, write_text

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    def is_finished(self) -> bool:
        return self.summary.is_file()

    def has_checkpoint(self) -> bool:
        return self.last.is_file()

    def remove_stale_temp_files(self) -> None:
        """Delete temp files a killed process left behind (atomic writes never touched the targets)."""
        for folder in (self.root, self.checkpoints):
            for temp in folder.glob(".*.tmp"):
                temp.unlink(missing_ok=True)

    def clear_previous(self) -> None:
        """Remove a previous run's results before training from scratch in the same directory."""
        exported = ("model.onnx", "manifest.json", "eval.npz", "calib.npz")
        for path in (self.summary, self.metrics, self.last, self.best, *(self.root / name for name in exported)):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.tensorboard, ignore_errors=True)


def git_revision() -> dict[str, Any]:
    """The source revision and whether the work tree has uncommitted changes (None when not a git checkout)."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": rev, "dirty": bool(status.strip())}


def environment(seed: int, start_step: int) -> dict[str, Any]:
    """What produced a run: versions, machine, seed, revision, command line, start time."""
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": cuda,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "seed": seed,
        "git": git_revision(),
        "command": sys.argv,
        "start_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "start_step": start_step,
    }


def write_env(run: RunDir, seed: int, start_step: int) -> Path:
    return write_json(run.env, environment(seed, start_step))


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rewrite the whole metrics table atomically (columns: the union over rows, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def read_summary(run: RunDir) -> dict[str, Any]:
    return json.loads(run.summary.read_text(encoding="utf-8"))


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
