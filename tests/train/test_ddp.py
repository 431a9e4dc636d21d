"""DDP through torchrun: two CPU processes (gloo) train the tiny net; rank 0 alone writes the run directory."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "train.cli",
        "run",
        "--config",
        str(REPO / "configs" / "smoke_synthetic.yaml"),
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    # 230 training images (10 % of 256 held out), global batch 32 = 16 per rank: 115 // 16 = 7 steps per epoch.
    assert summary["steps"] == 14 and summary["test_images"] == 128
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [7, 14]
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert not any(key.startswith("module.") for key in state["model"])
    assert json.loads((out / "env.json").read_text())["world_size"] == 2
    # Only rank 0 reports: one line per epoch, not two.
    assert result.stderr.count("epoch 2/2 step 14") == 1
