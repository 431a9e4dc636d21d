"""The transport interface: push files to a target, run an argument list there, pull files back.

A transport is one class: it declares its ``kind`` (the word in ``--transport`` and ``devices.yaml``),
how its address is written, what the target offers (``Capabilities``) and how it is opened for a
device. ``runtime.transports`` registers the classes by kind; nothing else looks at the kind.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from bitat_edge.bench_record import Facts
from runtime.errors import BenchError

if TYPE_CHECKING:
    from runtime.devices import Device
    from runtime.emulation.counts import InsnCounts


@dataclass(frozen=True)
class Capabilities:
    """What a kind of target offers; the harness asks these instead of comparing transport names."""

    emulated: bool = False  # numbers come from an emulator: labelled EMULATED, never mixed with device figures
    python: Literal["harness", "target", "sysroot", "none"] = "target"
    """Who runs the interpreter engines' script: ``harness`` (this process's interpreter, on this machine),
    ``target`` (the device's Python: the inventory's ``python:``, else python3), ``sysroot`` (an emulated
    Python assembled on this machine, with LiteRT but no LCE: ``runtime.emulation.sysroot``) or ``none``
    (binaries only)."""
    libc: Literal["glibc", "bionic"] = "glibc"
    """The C library of the target: glibc-linked binaries run there (their GLIBC_x.y needs are checked), or
    bionic (Android: a binary must be static or built for Android)."""


@dataclass(frozen=True)
class TransportSpec:
    """A parsed ``--transport`` value: the kind plus the address fields that kind uses."""

    kind: str
    host: str = ""
    user: str = ""
    port: int = 22
    serial: str = ""


@dataclass
class CompletedRun:
    """What one command on the target produced."""

    stdout: str
    stderr: str
    returncode: int
    seconds: float

    @property
    def output(self) -> str:
        """stdout then stderr (TFLite tools split their log lines across both)."""
        return self.stdout + ("\n" if self.stdout and not self.stdout.endswith("\n") else "") + self.stderr


class Transport(ABC):
    """A way to reach a target. Paths on the target are strings; argument lists are never shell strings."""

    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    forms: ClassVar[tuple[str, ...]]  # how ``--transport`` spells it, e.g. ("adb", "adb:SERIAL")

    @classmethod
    def parse(cls, address: str, text: str) -> TransportSpec:
        """The spec of ``kind[:address]`` (``text`` is the whole value, for messages); default: no address."""
        if address:
            raise BenchError(f"transport {text!r}: '{cls.kind}' takes no address; write it as {' or '.join(cls.forms)}")
        return TransportSpec(cls.kind)

    @classmethod
    def address_template(cls, spec: TransportSpec) -> str:
        """Inventory lines to show when ``spec`` lacks an address this transport needs; "" when it lacks none."""
        return ""

    @classmethod
    @abstractmethod
    def open(cls, spec: TransportSpec, device: Device) -> Transport:
        """The transport for ``device`` (connections open lazily, on first use)."""

    @property
    @abstractmethod
    def label(self) -> str:
        """Where commands run, for messages (e.g. 'ssh://pi@10.0.0.2:22')."""

    @abstractmethod
    def workdir(self) -> str:
        """A private directory on the target for this session (created on first use)."""

    @abstractmethod
    def push(self, local: str, remote: str, executable: bool = False) -> None:
        """Copy a local file to ``remote`` on the target."""

    @abstractmethod
    def pull(self, remote: str, local: str) -> None:
        """Copy ``remote`` from the target to ``local``."""

    @abstractmethod
    def run(self, argv: list[str], timeout: float) -> CompletedRun:
        """Run ``argv`` on the target; raise ``TransportTimeout`` when it runs past ``timeout`` seconds."""

    def run_counted(self, argv: list[str], timeout: float,
                    marker: int | str | None = None) -> tuple[CompletedRun, InsnCounts | None]:
        """Run ``argv`` counting the instructions it executes (EMULATED targets only); the counts are None
        when the program failed. ``marker``: the address of an instruction, or ``"getppid"`` (each
        os.getppid() of a Python program), at which the count so far is recorded (``runtime.emulation.counts``)."""
        raise BenchError(f"{self.label}: instructions can be counted only on emulated targets")

    def facts(self) -> Facts:
        """uname, CPU, governor, glibc and word size of the target, read with plain commands."""
        facts = Facts()
        facts.machine = self._line(["uname", "-m"])
        facts.kernel = self._line(["uname", "-r"])
        bits = self._line(["getconf", "LONG_BIT"])
        facts.long_bit = int(bits) if bits.isdigit() else 0
        glibc = self._line(["getconf", "GNU_LIBC_VERSION"])  # "glibc 2.36"
        facts.glibc = glibc.split()[-1] if glibc.startswith("glibc") else ""
        facts.governor = self._line(["cat", "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"])
        facts.cpu = cpu_model(self._text(["cat", "/proc/cpuinfo"]))
        facts.os = os_name(self._text(["cat", "/etc/os-release"]))
        return facts

    @abstractmethod
    def close(self) -> None:
        """Release connections and remove the session's working directory where possible."""

    def _text(self, argv: list[str]) -> str:
        done = self.run(argv, timeout=20)
        return done.stdout if done.returncode == 0 else ""

    def _line(self, argv: list[str]) -> str:
        lines = self._text(argv).strip().splitlines()
        return lines[0].strip() if lines else ""


def cpu_model(cpuinfo: str) -> str:
    """The CPU name from /proc/cpuinfo: 'model name' (x86), else 'Model'/'Hardware' + 'CPU part' (ARM)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if "model name" in fields:
        return fields["model name"]
    parts = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xc07": "Cortex-A7"}
    part = fields.get("cpu part", "")
    name = fields.get("model") or fields.get("hardware") or ""
    return " ".join(filter(None, [name, parts.get(part, f"CPU part {part}" if part else "")]))


def os_name(os_release: str) -> str:
    """PRETTY_NAME from /etc/os-release text."""
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', os_release, re.MULTILINE)
    return match.group(1) if match else ""
