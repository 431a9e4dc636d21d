"""Run on this machine: subprocess with argument lists, a process-group kill on timeout."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import BenchError, TransportTimeout
from runtime.transports.base import Capabilities, CompletedRun, Transport, TransportSpec

if TYPE_CHECKING:
    from runtime.devices import Device


def run_local(argv: list[str], timeout: float, label: str = "this machine", cwd: str | None = None) -> CompletedRun:
    """Run ``argv`` locally; kill its whole process group when it passes ``timeout`` seconds."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=cwd, start_new_session=True, text=True, errors="replace",
        )
    except FileNotFoundError:
        raise BenchError(f"{argv[0]}: program not found on {label}; install it or pass its full path") from None
    except PermissionError:
        raise BenchError(f"{argv[0]}: not executable on {label}; chmod +x it") from None
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise BenchError(
                f"{argv[0]}: cannot execute on {label} (wrong architecture: the binary is not built for this "
                "CPU); run it on its target or through --device qemu-aarch64"
            ) from None
        raise BenchError(f"{argv[0]}: cannot start on {label} ({exc.strerror})") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TransportTimeout(
            f"{' '.join(argv[:3])}: still running on {label} after {timeout:g} s and was killed; "
            "raise the timeout or lower --runs"
        ) from None
    return CompletedRun(stdout, stderr, proc.returncode, time.monotonic() - start)


class LocalTransport(Transport):
    """The machine the harness runs on."""

    kind = "local"
    capabilities = Capabilities(python="harness")
    forms = ("local",)

    def __init__(self) -> None:
        self._workdir: str | None = None

    @classmethod
    def open(cls, spec: TransportSpec, device: Device) -> LocalTransport:
        return cls()

    @property
    def label(self) -> str:
        return "local"

    def workdir(self) -> str:
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="bitat-edge-")
        return self._workdir

    def push(self, local: str, remote: str, executable: bool = False) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, remote)
        if executable:
            os.chmod(remote, 0o755)

    def pull(self, remote: str, local: str) -> None:
        if not Path(remote).is_file():
            raise BenchError(f"{remote}: expected result file was not written on {self.label}")
        shutil.copyfile(remote, local)

    def run(self, argv: list[str], timeout: float) -> CompletedRun:
        return run_local(argv, timeout, self.label)

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
