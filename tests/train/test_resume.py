"""Exact resume: a run SIGKILLed mid-epoch and resumed ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
# Deterministic on the CPU: one thread, no loader workers (both set in the smoke config).
COMMAND = [
    sys.executable,
    "-m",
    "train.cli",
    "run",
    "--config",
    str(REPO / "configs" / "smoke_synthetic.yaml"),
    "--set",
    "data.synthetic_train=1024",
    "--set",
    "optim.epochs=3",
]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, "--out", str(out), *extra], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def _kill_mid_epoch(out: Path) -> dict:
    """Start the run, SIGKILL it once last.pt is a mid-epoch checkpoint after the first epoch; return that state."""
    process = subprocess.Popen(
        [*COMMAND, "--out", str(out)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = out / "checkpoints" / "last.pt"
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            if last.exists():
                state = load_checkpoint(last)  # atomic writes: never a half-written file here
                if state["epoch"] >= 1 and state["position"] > 0:
                    process.send_signal(signal.SIGKILL)
                    process.wait(timeout=30)
                    return state
            time.sleep(0.01)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    pytest.fail("the run ended before a mid-epoch checkpoint of its second epoch appeared")


@pytest.mark.slow
def test_killed_run_resumes_bit_identical(tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    done = _run(reference)
    assert done.returncode == 0, done.stderr

    killed_at = _kill_mid_epoch(resumed)
    assert not (resumed / "summary.json").exists()

    again = _run(resumed)
    assert again.returncode == 0, again.stderr
    assert f"resuming {resumed} at step {killed_at['global_step']}" in again.stderr

    ref = load_checkpoint(reference / "checkpoints" / "last.pt")
    res = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert res["global_step"] == ref["global_step"] == 3 * 28
    assert ref["model"].keys() == res["model"].keys()
    for name, tensor in ref["model"].items():
        assert torch.equal(tensor, res["model"][name]), name
    ref_moments = ref["optimizer"]["state"]
    for index, slots in ref_moments.items():
        for key, value in slots.items():
            assert torch.equal(value, res["optimizer"]["state"][index][key]), (index, key)

    def learning_columns(run: Path) -> list[tuple[str, ...]]:
        rows = csv.DictReader((run / "metrics.csv").open())
        return [(r["epoch"], r["step"], r["train_loss"], r["val_loss"], r["val_acc"]) for r in rows]

    assert learning_columns(resumed) == learning_columns(reference)
