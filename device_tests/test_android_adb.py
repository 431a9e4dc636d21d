"""Android over adb: needs a device; set ANDROID_SERIAL to its serial (from `adb devices`) to run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.bench import cli
from runtime.engines.benchmark_binary import BIN_DIR
from runtime.transports.adb import AdbTransport

SERIAL = os.environ.get("ANDROID_SERIAL", "")
BINARY = Path(os.environ.get("LCE_BENCHMARK_MODEL_ANDROID", BIN_DIR / "lce_benchmark_model_android_arm64"))

pytestmark = [
    pytest.mark.android,
    pytest.mark.skipif(shutil.which("adb") is None, reason="adb is not installed (Android platform-tools)"),
    pytest.mark.skipif(not SERIAL, reason="no Android device: set ANDROID_SERIAL to a serial from `adb devices`"),
]


def test_adb_push_run_pull_and_facts(tmp_path: Path):
    t = AdbTransport(SERIAL)
    try:
        src = tmp_path / "x.txt"
        src.write_text("hello android")
        remote = f"{t.workdir()}/x.txt"
        t.push(str(src), remote)
        assert t.run(["cat", remote], timeout=30).stdout.strip() == "hello android"
        t.pull(remote, str(tmp_path / "y.txt"))
        assert (tmp_path / "y.txt").read_text() == "hello android"
        assert t.facts().machine
    finally:
        t.close()


@pytest.mark.skipif(not BINARY.is_file(), reason="no lce_benchmark_model_android_arm64 (make docker-lce-android_arm64)")
def test_bench_on_android(device_bundle: Path, tmp_path: Path):
    args = ["--device", "android", "--transport", f"adb:{SERIAL}", "--binary", str(BINARY), "--bundle",
            str(device_bundle), "--model", "lce", "--runs", "5", "--windows", "2", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    session = json.loads(next(tmp_path.glob("android-*/results.json")).read_text())
    assert session["emulated"] is False and session["measurements"][0]["engine"] == "benchmark-binary"
