"""The transport interface: push files to a target, run an argument list there, pull files back."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass


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


@dataclass
class Facts:
    """System facts recorded with every result."""

    machine: str = ""  # uname -m (or the emulated CPU's architecture)
    kernel: str = ""  # uname -r
    cpu: str = ""  # CPU model name
    governor: str = ""  # cpufreq scaling governor of cpu0, "" when not exposed
    glibc: str = ""  # e.g. "2.36"; "" on Android (bionic) or when unknown
    long_bit: int = 0  # 64 for a 64-bit userland
    os: str = ""  # PRETTY_NAME of /etc/os-release, or Android's release


class Transport(ABC):
    """A way to reach a target. Paths on the target are strings; argument lists are never shell strings."""

    kind: str = ""
    emulated: bool = False

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
