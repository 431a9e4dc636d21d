"""Transports against the real thing: local processes, a closed TCP port, qemu's command line."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from runtime.errors import BenchError, TransportTimeout
from runtime.transports.base import cpu_model, os_name
from runtime.transports.local import LocalTransport
from runtime.transports.qemu import QemuTransport
from runtime.transports.ssh import SshTransport


def test_local_push_run_pull_roundtrip(tmp_path: Path):
    transport = LocalTransport()
    try:
        src = tmp_path / "in.txt"
        src.write_text("payload")
        remote = f"{transport.workdir()}/sub/in.txt"
        transport.push(str(src), remote)
        done = transport.run([sys.executable, "-c", "import sys; print(open(sys.argv[1]).read()); "
                              "print('err', file=sys.stderr); sys.exit(3)", remote], timeout=30)
        assert (done.stdout.strip(), done.stderr.strip(), done.returncode) == ("payload", "err", 3)
        assert done.output == "payload\nerr\n"
        transport.pull(remote, str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "payload"
        with pytest.raises(BenchError, match="was not written"):
            transport.pull(f"{transport.workdir()}/missing.json", str(tmp_path / "x"))
        workdir = transport.workdir()
    finally:
        transport.close()
    assert not Path(workdir).exists()


def test_local_timeout_kills_the_process_group():
    transport = LocalTransport()
    start = time.monotonic()
    with pytest.raises(TransportTimeout, match=r"still running on local after 0.5 s and was killed"):
        transport.run(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert time.monotonic() - start < 10


def test_missing_program_is_a_clear_error():
    with pytest.raises(BenchError, match="program not found"):
        LocalTransport().run(["/nonexistent/lce_benchmark_model", "--help"], timeout=5)


def test_aarch64_binary_on_x86_host_is_reported_as_wrong_architecture(aarch64_program: Path):
    import platform

    if platform.machine() == "aarch64":
        pytest.skip("this machine is aarch64 itself")
    if Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("binfmt_misc runs aarch64 binaries transparently on this machine")
    with pytest.raises(BenchError, match="wrong architecture"):
        LocalTransport().run([str(aarch64_program)], timeout=10)


def test_local_facts_describe_this_machine():
    facts = LocalTransport().facts()
    assert facts.machine and facts.kernel and facts.long_bit in (32, 64)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_ssh_host_fails_fast_and_clearly():
    port = _closed_port()
    transport = SshTransport("127.0.0.1", "pi", port, connect_timeout=3)
    start = time.monotonic()
    with pytest.raises(BenchError, match=rf"ssh://pi@127.0.0.1:{port}: cannot reach the device"):
        transport.run(["true"], timeout=10)
    assert time.monotonic() - start < 5


def test_qemu_command_line_uses_sysroot_only_for_dynamic_binaries(aarch64_program: Path, tmp_path: Path):
    transport = QemuTransport("qemu-aarch64", "cortex-a72", "/usr/aarch64-linux-gnu")
    if not Path("/usr/aarch64-linux-gnu/lib").is_dir():
        pytest.skip("no aarch64 sysroot")
    cmd, env = transport.command([str(aarch64_program), "--x"])
    assert cmd == ["qemu-aarch64", "-cpu", "cortex-a72", "-L", "/usr/aarch64-linux-gnu", str(aarch64_program), "--x"]
    assert env is None  # a program runs with this process's environment; only the sysroot Python gets its own
    missing = QemuTransport("qemu-nonexistent-arch", "x", "/nowhere")
    with pytest.raises(BenchError, match="install qemu-user"):
        missing.command([str(aarch64_program)])
    no_sysroot = QemuTransport("qemu-aarch64", "cortex-a72", str(tmp_path / "none"))
    with pytest.raises(BenchError, match="no sysroot"):
        no_sysroot.command([str(aarch64_program)])


def test_cpuinfo_and_os_release_parsing():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"
    pi4 = "processor\t: 0\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
    assert cpu_model(x86) == "AMD EPYC 7B13"
    assert cpu_model(pi4) == "Raspberry Pi 4 Model B Rev 1.4 Cortex-A72"
    assert os_name('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n') == "Debian GNU/Linux 12 (bookworm)"
