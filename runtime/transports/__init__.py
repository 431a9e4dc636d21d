"""Transports by kind: local, qemu user-mode, qemu-system (microcontroller boards), ssh (paramiko), adb. ``parse_spec`` reads a ``--transport`` value.

Adding a transport is one class (see ``runtime.transports.base.Transport``) listed in ``TRANSPORTS``.
"""

from __future__ import annotations

from runtime.errors import BenchError
from runtime.transports.adb import AdbTransport
from runtime.transports.base import Capabilities, CompletedRun, Transport, TransportSpec
from runtime.transports.local import LocalTransport
from runtime.transports.qemu import QemuTransport
from runtime.transports.qemu_system import QemuSystemTransport
from runtime.transports.ssh import SshTransport

__all__ = ["TRANSPORTS", "Capabilities", "CompletedRun", "Transport", "TransportSpec", "parse_spec",
           "transport_class"]

TRANSPORTS: dict[str, type[Transport]] = {
    cls.kind: cls for cls in (LocalTransport, QemuTransport, QemuSystemTransport, SshTransport, AdbTransport)
}


def _forms() -> str:
    forms = [form for cls in TRANSPORTS.values() for form in cls.forms]
    return f"{', '.join(forms[:-1])} or {forms[-1]}"


def transport_class(kind: str) -> type[Transport]:
    """The transport registered for ``kind``."""
    if kind not in TRANSPORTS:
        raise BenchError(f"transport '{kind}': unknown; use {_forms()}")
    return TRANSPORTS[kind]


def parse_spec(text: str) -> TransportSpec:
    """'local' | 'qemu' | 'ssh://user@host[:port]' | 'adb' | 'adb:SERIAL' -> TransportSpec."""
    value = text.strip()
    kind, _, address = value.partition(":")
    if kind not in TRANSPORTS:
        raise BenchError(f"transport {text!r}: unknown; use {_forms()}")
    return TRANSPORTS[kind].parse(address, text)
