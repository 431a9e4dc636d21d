"""Transports: local, ssh (paramiko), adb, qemu user-mode. ``parse_spec`` reads a ``--transport`` value."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from runtime.errors import BenchError
from runtime.transports.base import CompletedRun, Facts, Transport

__all__ = ["CompletedRun", "Facts", "Transport", "TransportSpec", "parse_spec"]


@dataclass
class TransportSpec:
    """A parsed transport: kind plus address fields (only those the kind uses are set)."""

    kind: str  # local | qemu | ssh | adb
    host: str = ""
    user: str = ""
    port: int = 22
    serial: str = ""

    def __str__(self) -> str:
        if self.kind == "ssh":
            return f"ssh://{self.user + '@' if self.user else ''}{self.host}:{self.port}"
        if self.kind == "adb":
            return f"adb:{self.serial}" if self.serial else "adb"
        return self.kind


def parse_spec(text: str) -> TransportSpec:
    """'local' | 'qemu' | 'ssh://user@host[:port]' | 'adb' | 'adb:SERIAL' -> TransportSpec."""
    value = text.strip()
    if value in ("local", "qemu", "ssh", "adb"):
        return TransportSpec(kind=value)
    if value.startswith("adb:"):
        return TransportSpec(kind="adb", serial=value[4:])
    if value.startswith("ssh://"):
        parts = urlsplit(value)
        try:
            port = parts.port or 22
        except ValueError:
            port = -1
        if not parts.hostname or port <= 0 or parts.path not in ("", "/"):
            raise BenchError(f"transport {text!r}: write it as ssh://user@host[:port] (e.g. ssh://pi@192.168.1.50:22)")
        return TransportSpec(kind="ssh", host=parts.hostname, user=parts.username or "", port=port)
    raise BenchError(
        f"transport {text!r}: unknown; use local, qemu, ssh://user@host[:port], adb or adb:SERIAL"
    )
