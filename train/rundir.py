"""What the train stage writes into a run directory besides checkpoints: the environment record,
the metrics table and the summary; and cleaning a directory for a fresh run. The file names are
``bitat_edge.layout.RunDir``'s.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import resource
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitat_edge import schema
from bitat_edge.atomic import write_json, write_text
from bitat_edge.layout import RunDir

REPO_ROOT = Path(__file__).resolve().parent.parent


def remove_stale_temp_files(run: RunDir) -> None:
    """Delete temp files a killed process left behind (atomic writes never touched the targets)."""
    for folder in (run.root, run.checkpoints):
        for temp in folder.glob(".*.tmp"):
            temp.unlink(missing_ok=True)


def clear_previous(run: RunDir) -> None:
    """Remove a previous run's results before training from scratch in the same directory."""
    for path in (run.summary, run.metrics, run.last, run.best, *run.exported):
        path.unlink(missing_ok=True)
    shutil.rmtree(run.tensorboard, ignore_errors=True)


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
    """The finished run's ``summary.json`` (``SchemaError`` when it is unreadable)."""
    return schema.read_json(run.summary, "run summary")


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
