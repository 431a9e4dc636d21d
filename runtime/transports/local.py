"""Run on this machine: subprocess with argument lists, a process-group kill on timeout and on Ctrl-C."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from runtime.errors import BenchError, TransportTimeout
from runtime.transports.base import Capabilities, CompletedRun, Transport, TransportSpec

if TYPE_CHECKING:
    from runtime.devices import Device


def run_local(argv: list[str], timeout: float, label: str = "this machine", cwd: str | None = None,
              env: dict[str, str] | None = None, on_stderr_line: Callable[[str], None] | None = None) -> CompletedRun:
    """Run ``argv`` locally (environment ``env``, default this process's); each stderr line also goes to
    ``on_stderr_line`` as it arrives. The command runs in its own process group, which is killed when it
    passes ``timeout`` seconds and on any error or Ctrl-C here, so nothing keeps running behind us."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True, text=True, errors="replace",
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
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=_drain, args=(proc.stdout, out, None), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, err, on_stderr_line), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TransportTimeout(
            f"{' '.join(argv[:3])}: still running on {label} after {timeout:g} s and was killed; "
            "raise the timeout or lower --runs"
        ) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for reader in readers:
            reader.join()
    return CompletedRun("".join(out), "".join(err), proc.returncode, time.monotonic() - start)


def _drain(pipe: IO[str], lines: list[str], on_line: Callable[[str], None] | None) -> None:
    for line in pipe:
        lines.append(line)
        if on_line is not None:
            on_line(line.rstrip("\n"))
    pipe.close()


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
