"""SSH end to end through a real sshd on loopback (started by the test): push, run, pull, host keys,
quoting, timeouts, dropped connections, and a full bench session measured on the "remote" side."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.bench import cli
from runtime.errors import BenchError, TransportTimeout
from runtime.transports.ssh import SshTransport

pytestmark = pytest.mark.ssh


def transport(sshd, **kwargs) -> SshTransport:
    options = {"key": str(sshd.user_key), "known_hosts": str(sshd.known_hosts), "connect_timeout": 5} | kwargs
    return SshTransport("127.0.0.1", sshd.user, sshd.port, **options)


def test_push_run_pull_with_quoted_arguments(sshd, tmp_path: Path):
    t = transport(sshd)
    try:
        src = tmp_path / "data.bin"
        src.write_bytes(os.urandom(200_000))
        remote = f"{t.workdir()}/data.bin"
        t.push(str(src), remote)
        tricky = "a b; echo INJECTED $(id) 'q' \"dq\""
        done = t.run([sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", tricky, "*"], timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == repr([tricky, "*"])
        back = tmp_path / "back.bin"
        t.pull(remote, str(back))
        assert back.read_bytes() == src.read_bytes()
        failing = t.run(["sh", "-c", "echo out; echo err >&2; exit 5"], timeout=30)
        assert (failing.stdout, failing.stderr, failing.returncode) == ("out\n", "err\n", 5)
        facts = t.facts()
        assert facts.machine and facts.long_bit == 64 and facts.glibc
        workdir = t.workdir()
    finally:
        t.close()
    assert not Path(workdir).exists()


def test_unknown_host_key_is_refused_with_instructions(sshd, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(BenchError, match=rf"unknown host key .*ssh-keyscan -p {sshd.port} 127.0.0.1"):
        transport(sshd, known_hosts=str(empty)).run(["true"], timeout=10)


def test_changed_host_key_is_refused(sshd, tmp_path: Path):
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    with pytest.raises(BenchError, match="host key does not match"):
        transport(sshd, known_hosts=str(tmp_path / "known_hosts")).run(["true"], timeout=10)


def test_command_past_its_timeout_is_killed(sshd):
    t = transport(sshd)
    try:
        start = time.monotonic()
        with pytest.raises(TransportTimeout, match="after 1 s"):
            t.run(["sleep", "30"], timeout=1)
        assert time.monotonic() - start < 15
        assert t.run(["echo", "still usable"], timeout=10).stdout == "still usable\n"
    finally:
        t.close()


def _kill_sessions_later(sshd, delay: float) -> threading.Thread:
    def kill() -> None:
        time.sleep(delay)
        for pid in sshd.session_pids():
            os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


def test_dropped_connection_is_retried(sshd):
    t = transport(sshd, retries=2)
    try:
        t.run(["true"], timeout=10)  # connected
        killer = _kill_sessions_later(sshd, 0.7)
        done = t.run(["sh", "-c", "sleep 2; echo finished"], timeout=30)
        killer.join()
        assert done.stdout == "finished\n"
    finally:
        t.close()


def test_dropped_connection_without_recovery_is_reported(sshd):
    t = transport(sshd, retries=1)
    try:
        t.run(["true"], timeout=10)
        start = time.monotonic()
        killers = [_kill_sessions_later(sshd, delay) for delay in (0.7, 2.5)]
        with pytest.raises(BenchError, match=r"connection dropped during `sh` 2 times"):
            t.run(["sh", "-c", "sleep 3; echo finished"], timeout=30)
        for k in killers:
            k.join()
        assert time.monotonic() - start < 20
    finally:
        t.close()


def test_bench_over_ssh_measures_on_the_remote_side(sshd, device_bundle: Path, tmp_path: Path):
    inventory = tmp_path / "devices.yaml"
    inventory.write_text(
        "devices:\n  loopback:\n    like: host\n"
        f"    transport: ssh://{sshd.user}@127.0.0.1:{sshd.port}\n    key: {sshd.user_key}\n"
        f"    known_hosts: {sshd.known_hosts}\n    python: {sys.executable}\n"
    )
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["--device", "loopback", "--inventory", str(inventory), "--bundle",
                                      str(device_bundle), "--model", "lce", "--runs", "5", "--windows", "2",
                                      "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    session_dir = next(out.glob("loopback-*"))
    session = json.loads((session_dir / "results.json").read_text())
    assert session["device"]["transport"] == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    (m,) = session["measurements"]
    assert m["engine"] == "lce-interpreter" and m["latency"]["overall"]["n"] == 10
    assert m["accuracy"]["total"] > 0 and m["matches_reference"] is True
    assert "ssh://" in (session_dir / "log.txt").read_text()


def test_doctor_over_ssh(sshd, device_bundle: Path, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("LCE_BENCHMARK_MODEL", raising=False)
    inventory = tmp_path / "devices.yaml"
    inventory.write_text(
        f"devices:\n  loopback:\n    like: host\n    transport: ssh://{sshd.user}@127.0.0.1:{sshd.port}\n"
        f"    key: {sshd.user_key}\n    known_hosts: {sshd.known_hosts}\n    python: {sys.executable}\n"
    )
    result = CliRunner().invoke(cli, ["doctor", "--device", "loopback", "--inventory", str(inventory),
                                      "--bundle", str(device_bundle)])
    out = result.output
    assert f"[ ok ] reachable: ssh://{sshd.user}@127.0.0.1:{sshd.port}" in out
    assert "[ ok ] architecture" in out and "[ ok ] 64-bit OS" in out and "[ ok ] python" in out
    assert "[warn] benchmark binary" in out and "[ ok ] LCE op coverage" in out
    assert result.exit_code == 0, out
