"""QEMU user-mode emulation: run an ARM Linux binary on this machine (timings are emulated)."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.elf import format_version, read_elf
from runtime.errors import BenchError
from runtime.transports.base import Capabilities, CompletedRun, Facts, TransportSpec, cpu_model
from runtime.transports.local import LocalTransport, run_local

if TYPE_CHECKING:
    from runtime.devices import Device

QEMU_ARCH = {"qemu-aarch64": "aarch64", "qemu-arm": "arm"}


class QemuTransport(LocalTransport):
    """``qemu-aarch64 -cpu cortex-a72 [-L sysroot] BINARY ARGS`` (``-L`` only for dynamically linked binaries)."""

    kind = "qemu"
    capabilities = Capabilities(emulated=True, python="none")
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

    def command(self, argv: list[str]) -> list[str]:
        """The host argument list that runs target ``argv`` under QEMU."""
        if shutil.which(self.qemu) is None:
            raise BenchError(
                f"{self.qemu}: not installed; install qemu-user (apt-get install qemu-user) to use emulated devices"
            )
        prefix = [self.qemu, "-cpu", self.cpu]
        program = Path(argv[0])
        if program.is_file() and read_elf(program).dynamic:
            if not Path(self.sysroot, "lib").is_dir():
                raise BenchError(
                    f"{self.sysroot}: no sysroot for the dynamically linked {program.name}; install the "
                    "cross libc (e.g. libc6-dev-arm64-cross) or link the binary statically"
                )
            prefix += ["-L", self.sysroot]
        return prefix + argv

    def run(self, argv: list[str], timeout: float) -> CompletedRun:
        return run_local(self.command(argv), timeout, self.label)

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
