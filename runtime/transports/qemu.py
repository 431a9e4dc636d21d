"""QEMU user-mode emulation: run an ARM Linux binary on this machine (EMULATED: instructions, not time).

``python3`` on this target is the Python of the emulation sysroot (``runtime.emulation.sysroot``: numpy
and LiteRT, built on first use), so the interpreter engines run there too; ``run_counted`` loads the
instruction-counting plugin (``runtime.emulation.plugin``).
"""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.elf import format_version, read_elf
from runtime.emulation.counts import GETPPID, InsnCounts, plugin_args, read_counts
from runtime.emulation.plugin import ensure_plugin
from runtime.emulation.sysroot import ensure_sysroot
from runtime.errors import BenchError
from runtime.transports.base import Capabilities, CompletedRun, Facts, TransportSpec, cpu_model
from runtime.transports.local import LocalTransport, run_local

if TYPE_CHECKING:
    from runtime.devices import Device

QEMU_ARCH = {"qemu-aarch64": "aarch64", "qemu-arm": "arm"}
PYTHON = "python3"  # what engines run for the target's Python (Device.interpreter_python)


class QemuTransport(LocalTransport):
    """``qemu-aarch64 -cpu cortex-a72 [-L sysroot] BINARY ARGS`` (``-L`` only for dynamically linked binaries)."""

    kind = "qemu"
    capabilities = Capabilities(emulated=True, python="sysroot")
    forms = ("qemu",)

    def __init__(self, qemu: str = "qemu-aarch64", cpu: str = "cortex-a72", sysroot: str = "/usr/aarch64-linux-gnu"):
        super().__init__()
        self.qemu, self.cpu, self.sysroot = qemu, cpu, sysroot

    @classmethod
    def open(cls, spec: TransportSpec, device: Device) -> QemuTransport:
        if device.qemu is None:
            raise BenchError(f"device '{device.name}': no qemu settings in its profile; use --device qemu-aarch64")
        return cls(device.qemu.binary, device.qemu.cpu, device.qemu.sysroot)

    @property
    def label(self) -> str:
        return f"qemu ({self.qemu} -cpu {self.cpu})"

    @property
    def arch(self) -> str:
        return QEMU_ARCH.get(Path(self.qemu).name, "")

    def command(self, argv: list[str], qemu_args: Sequence[str] = ()) -> tuple[list[str], dict[str, str] | None]:
        """The host argument list and environment (None: this process's) that run target ``argv`` under QEMU,
        with ``qemu_args`` (e.g. a plugin) for QEMU itself."""
        if shutil.which(self.qemu) is None:
            raise BenchError(
                f"{self.qemu}: not installed; install qemu-user (apt-get install qemu-user) to use emulated devices"
            )
        if argv[0] == PYTHON:
            sysroot = ensure_sysroot(self.arch)
            return sysroot.command(argv[1:], qemu_args), sysroot.env()
        prefix = [self.qemu, "-cpu", self.cpu, *qemu_args]
        program = Path(argv[0])
        if program.is_file() and read_elf(program).dynamic:
            if not Path(self.sysroot, "lib").is_dir():
                raise BenchError(
                    f"{self.sysroot}: no sysroot for the dynamically linked {program.name}; install the "
                    "cross libc (e.g. libc6-dev-arm64-cross) or link the binary statically"
                )
            prefix += ["-L", self.sysroot]
        return prefix + argv, None

    def run(self, argv: list[str], timeout: float) -> CompletedRun:
        return self._run(argv, timeout)

    def run_counted(self, argv: list[str], timeout: float,
                    marker: int | str | None = None) -> tuple[CompletedRun, InsnCounts | None]:
        if marker == "getppid":
            marker_args = {"syscall": GETPPID[self.arch]}
        elif isinstance(marker, int) or marker is None:
            marker_args = {"marker": marker}
        else:
            raise BenchError(f"marker {marker!r}: give an instruction address or 'getppid'")
        plugin = ensure_plugin()
        with tempfile.TemporaryDirectory(prefix="bitat-edge-counts-") as tmp:
            out = Path(tmp) / "counts.txt"
            done = self._run(argv, timeout, plugin_args(plugin, out, **marker_args))
            counts = read_counts(out) if done.returncode == 0 else None
        return done, counts

    def _run(self, argv: list[str], timeout: float, qemu_args: Sequence[str] = ()) -> CompletedRun:
        """Emulation is slow: the program's 'progress:' lines are shown as they come (on stderr)."""
        host_argv, env = self.command(argv, qemu_args)
        return run_local(host_argv, timeout, self.label, env=env, on_stderr_line=_show_progress)

    def facts(self) -> Facts:
        """The emulated CPU and the sysroot's glibc; kernel and host CPU come from this machine."""
        libc = Path(self.sysroot, "lib", "libc.so.6")
        glibc = format_version(read_elf(libc).glibc_provided) if libc.is_file() else ""
        version = run_local([self.qemu, "--version"], 20, self.label).stdout.splitlines()
        machine = QEMU_ARCH.get(Path(self.qemu).name, "")
        try:
            host_cpu = cpu_model(Path("/proc/cpuinfo").read_text())
        except OSError:
            host_cpu = platform.processor()
        return Facts(
            machine=machine,
            kernel=platform.release(),
            cpu=f"{self.cpu} emulated by {version[0] if version else self.qemu} on {host_cpu}",
            governor="",
            glibc="" if glibc == "none" else glibc,
            long_bit=64 if machine == "aarch64" else 32,
            os=f"user-mode emulation, sysroot {self.sysroot}",
        )


def _show_progress(line: str) -> None:
    if line.startswith("progress:"):
        print(f"  {line[len('progress:'):].strip()}", file=sys.stderr, flush=True)
