"""LiteRT under qemu-aarch64 through bench.py: the emulation sysroot's Python runs remote_measure.py, top-1
and predictions match the host's TFLite, and instruction counts are EMULATED, exact and repeatable.

The first run assembles the sysroot (Debian arm64 packages + the ai-edge-litert wheel: about 45 MB of
downloads and 1-2 minutes) and builds the counting plugin; both are cached for later runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from factories import tflite_predictions

from runtime.bench import cli

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-user is not installed (apt-get install qemu-user)"),
]


def _bench(bundle: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["--device", "qemu-aarch64", "--bundle", str(bundle), "--model", "fp32",
                                      "--count-images", "2", "--timeout", "1800", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    assert "instructions per inference (EMULATED)" in result.output
    session_dir = next(out.glob("qemu-aarch64-*"))
    return {"dir": session_dir, **json.loads((session_dir / "results.json").read_text())}


def test_litert_runs_in_the_emulation_sysroot_with_exact_counts(device_bundle: Path, tmp_path: Path):
    first = _bench(device_bundle, tmp_path / "a")
    (m,) = first["measurements"]
    assert first["emulated"] is True and m["engine"] == "tflite-interpreter" and m["backend"] == "ai_edge_litert"
    assert m["latency"] is None and m["peak_memory_mb"] is None  # no time under emulation
    assert m["instructions"]["cpu"] == "cortex-a72" and m["instructions"]["per_inference"] > 10_000
    assert m["matches_reference"] is True  # top-1 equals the convert stage's host TFLite figure
    with np.load(device_bundle / "eval.npz") as data:
        x = data["x"]
    emulated = np.load(first["dir"] / "predictions_fp32.npy").tolist()
    assert emulated == tflite_predictions((device_bundle / "model_fp32.tflite").read_bytes(), x)

    again = _bench(device_bundle, tmp_path / "b", "--no-accuracy")
    assert again["measurements"][0]["instructions"] == m["instructions"]  # deterministic to the instruction
    assert again["measurements"][0]["accuracy"] is None


def test_doctor_reports_the_emulation_tools(device_bundle: Path):
    result = CliRunner().invoke(cli, ["doctor", "--device", "qemu-aarch64", "--bundle", str(device_bundle)])
    assert "[ ok ] instruction counter: QEMU plugin" in result.output
    assert "[ ok ] python: aarch64 Python 3.11" in result.output and "ai_edge_litert 2.3.0" in result.output


def test_armv7_has_no_litert_baseline(device_bundle: Path, tmp_path: Path):
    result = CliRunner().invoke(cli, ["--device", "qemu-armv7", "--bundle", str(device_bundle), "--out", str(tmp_path)])
    assert "note: measuring the LCE model only: LiteRT publishes no armv7 wheel" in result.output
    explicit = CliRunner().invoke(cli, ["--device", "qemu-armv7", "--bundle", str(device_bundle), "--model", "fp32",
                                        "--engine", "tflite-interpreter", "--out", str(tmp_path)])
    assert explicit.exit_code == 1 and "no armv7 wheel" in explicit.output
    assert "Traceback" not in explicit.output
