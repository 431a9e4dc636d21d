"""docker/dockerd.sh: the private dockerd docker/ci.sh uses starts, runs a real container, and is stopped by
its PID with no process, mount or folder of it left (only its data-root, the cache)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERD_SH = REPO / "docker" / "dockerd.sh"
# Made by dockerd/containerd outside their roots: run-time folders and the parents of container cgroups.
FIXED_DIRS = [Path("/run/docker"), Path("/run/containerd")] + [
    Path(line.split()[1]) / "docker" for line in Path("/proc/self/mounts").read_text().splitlines()
    if line.split()[2] in ("cgroup", "cgroup2")]

pytestmark = [
    pytest.mark.skipif(shutil.which("dockerd") is None, reason="no dockerd (apt-get install docker.io)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc to build the container's program"),
]


def dockerd(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(DOCKERD_SH), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short path (unix sockets are limited to 108 bytes) that does not exist yet."""
    parent = Path(tempfile.mkdtemp(prefix="bd", dir="/tmp"))
    yield parent / "d"
    shutil.rmtree(parent, ignore_errors=True)


def leftovers(run: Path, data: Path) -> list[str]:
    found = [line for line in Path("/proc/self/mounts").read_text().splitlines()
             if line.split()[1].startswith((str(run), str(data)))]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(run) in cmdline:
            found.append(f"process {proc.name}: {cmdline}")
    return found


def processes_in_cgroup_of(container: str) -> list[str]:
    found = []
    for cgroup in Path("/proc").glob("[0-9]*/cgroup"):
        try:
            if f"/docker/{container}" in cgroup.read_text() and alive(int(cgroup.parent.name)):
                found.append(cgroup.parent.name)
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie its parent (here: init) has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def program_image(tmp_path: Path) -> Path:
    """A root filesystem of two static programs: /argc exits with its argument count, /sleep waits."""
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        for name, body in (("argc", "(void)argv; return argc;"), ("sleep", "(void)argc; (void)argv; sleep(300);")):
            source = tmp_path / f"{name}.c"
            source.write_text(f"#include <unistd.h>\nint main(int argc, char **argv) {{ {body} return 0; }}\n")
            subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp_path / name), str(source)], check=True)
            tar.add(tmp_path / name, arcname=name)
    return tarball


def docker_cli(run: Path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{run}/docker.sock"}

    def docker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, env=env)

    return docker


def test_private_dockerd_runs_a_container_and_leaves_nothing_behind(tmp_path: Path, run_dir: Path):
    data = tmp_path / "data"
    existed = {d: d.exists() for d in FIXED_DIRS}
    tarball = program_image(tmp_path)
    start = dockerd("start", run_dir, data)
    try:
        assert start.returncode == 0, start.stderr
        assert start.stdout.strip() == f"DOCKER_HOST=unix://{run_dir}/docker.sock"
        pid = int((run_dir / "pid").read_text())
        docker = docker_cli(run_dir)
        assert docker("import", str(tarball), "bitat-edge/argc:test").returncode == 0
        ran = docker("run", "--rm", "--network=host", "bitat-edge/argc:test", "/argc", "a", "b")
        assert ran.returncode == 3, ran.stderr
        assert leftovers(run_dir, data), "a running daemon must be visible to the leftover check"
    finally:
        stop = dockerd("stop", run_dir, data)
    assert stop.returncode == 0, stop.stderr
    assert not alive(pid) and not run_dir.exists()
    assert leftovers(run_dir, data) == []
    assert [d for d in FIXED_DIRS if not existed[d] and d.exists()] == []
    assert (data / "image").is_dir(), "the data-root is the cache and stays"


def test_a_daemon_that_cannot_start_is_reported_and_cleaned_up(tmp_path: Path, run_dir: Path):
    data = tmp_path / "not-a-folder"
    data.write_text("")
    start = dockerd("start", run_dir, data)
    assert start.returncode == 2 and start.stdout == ""
    assert start.stderr.strip() == f"dockerd.sh: cannot use {data} as the data-root"
    assert not run_dir.exists() and leftovers(run_dir, data) == []


def test_stop_refuses_a_folder_it_did_not_start(run_dir: Path):
    result = dockerd("stop", run_dir)
    assert result.returncode == 2 and result.stderr.strip() == f"dockerd.sh: no run folder {run_dir}"


def test_a_daemon_that_exits_at_once_is_reported_with_its_log(tmp_path: Path, run_dir: Path):
    fake = tmp_path / "bin" / "dockerd"  # stands in for a dockerd that refuses to start (its log says why)
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'failed to start daemon: the reason' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    start = subprocess.run(["bash", str(DOCKERD_SH), "start", str(run_dir), str(tmp_path / "data")],
                           capture_output=True, text=True, timeout=120, env=env)
    assert start.returncode == 1 and start.stdout == ""
    assert "dockerd.sh: dockerd did not come up" in start.stderr and "failed to start daemon: the reason" in start.stderr
    assert not run_dir.exists()


def test_stop_also_ends_what_a_killed_dockerd_left_running(tmp_path: Path, run_dir: Path):
    data = tmp_path / "data"
    existed = {d: d.exists() for d in FIXED_DIRS}
    tarball = program_image(tmp_path)
    start = dockerd("start", run_dir, data)
    assert start.returncode == 0, start.stderr
    pid = int((run_dir / "pid").read_text())
    docker = docker_cli(run_dir)
    assert docker("import", str(tarball), "bitat-edge/sleep:test").returncode == 0
    container = docker("run", "--detach", "--network=host", "bitat-edge/sleep:test", "/sleep").stdout.strip()
    os.kill(pid, 9)  # a crashed daemon: the container and its shim keep running
    stop = dockerd("stop", run_dir, data)
    assert stop.returncode == 0, stop.stderr
    assert "killing container process" in stop.stderr and f"that dockerd {pid} left running" in stop.stderr
    assert not run_dir.exists() and leftovers(run_dir, data) == []
    assert container and processes_in_cgroup_of(container) == []
    assert [d for d in FIXED_DIRS if not existed[d] and d.exists()] == []
