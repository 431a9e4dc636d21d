"""Android over adb: ``adb -s SERIAL push|shell|pull`` with argument lists; files under /data/local/tmp."""

from __future__ import annotations

import shlex
import shutil
from typing import TYPE_CHECKING

from runtime.errors import BenchError
from runtime.transports.base import Capabilities, CompletedRun, Facts, Transport, TransportSpec
from runtime.transports.local import run_local

if TYPE_CHECKING:
    from runtime.devices import Device

REMOTE_ROOT = "/data/local/tmp/bitat-edge"


class AdbTransport(Transport):
    """An Android device reached with adb (USB or ``adb connect``)."""

    kind = "adb"
    capabilities = Capabilities(python="none", libc="bionic")
    forms = ("adb", "adb:SERIAL")

    def __init__(self, serial: str = "", adb: str = "adb", transfer_timeout: float = 300) -> None:
        self.serial, self.adb, self.transfer_timeout = serial, adb, transfer_timeout
        self._workdir_made = False

    @classmethod
    def parse(cls, address: str, text: str) -> TransportSpec:
        return TransportSpec(cls.kind, serial=address)

    @classmethod
    def open(cls, spec: TransportSpec, device: Device) -> AdbTransport:
        return cls(spec.serial)

    @property
    def label(self) -> str:
        return f"adb:{self.serial}" if self.serial else "adb"

    def _base(self) -> list[str]:
        if shutil.which(self.adb) is None:
            raise BenchError(f"{self.adb}: not installed; install Android platform-tools to reach Android devices")
        return [self.adb] + (["-s", self.serial] if self.serial else [])

    def _adb(self, args: list[str], timeout: float) -> CompletedRun:
        done = run_local(self._base() + args, timeout, self.label)
        text = done.output.lower()
        if done.returncode != 0 and ("not found" in text and "device" in text or "no devices" in text):
            raise BenchError(
                f"{self.label}: no such device attached ({done.output.strip()}); check `adb devices` and the "
                "serial in your inventory"
            )
        return done

    def workdir(self) -> str:
        if not self._workdir_made:
            self.run(["mkdir", "-p", REMOTE_ROOT], timeout=30)
            self._workdir_made = True
        return REMOTE_ROOT

    def push(self, local: str, remote: str, executable: bool = False) -> None:
        done = self._adb(["push", local, remote], self.transfer_timeout)
        if done.returncode != 0:
            raise BenchError(f"adb push {local} -> {remote} failed on {self.label}: {done.output.strip()}")
        if executable:
            self.run(["chmod", "755", remote], timeout=30)

    def pull(self, remote: str, local: str) -> None:
        done = self._adb(["pull", remote, local], self.transfer_timeout)
        if done.returncode != 0:
            raise BenchError(f"adb pull {remote} failed on {self.label}: {done.output.strip()}")

    def run(self, argv: list[str], timeout: float) -> CompletedRun:
        # adb joins shell arguments with spaces and hands them to the device's sh: quote each one.
        return self._adb(["shell", shlex.join(argv)], timeout)

    def facts(self) -> Facts:
        facts = super().facts()
        facts.machine = facts.machine or self._line(["getprop", "ro.product.cpu.abi"])
        facts.os = f"Android {self._line(['getprop', 'ro.build.version.release'])}".strip()
        facts.glibc = ""  # bionic
        return facts

    def close(self) -> None:
        if self._workdir_made:
            self.run(["rm", "-rf", REMOTE_ROOT], timeout=60)
            self._workdir_made = False
