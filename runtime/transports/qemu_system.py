"""QEMU system emulation of a microcontroller board: the engine runs as bare-metal firmware on this machine.

There is no shell on the target: the MCU engine (runtime/engines/mcu.py) builds a firmware for the
device's board and runs it with ``qemu-system-arm`` (runtime/mcu/qemu.py). This transport supplies
the session's working directory, local commands and the facts of the emulated board.
"""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import BenchError
from runtime.mcu.boards import Board, get_board
from runtime.mcu.qemu import QEMU
from runtime.transports.base import Capabilities, Facts, TransportSpec, cpu_model
from runtime.transports.local import LocalTransport, run_local

if TYPE_CHECKING:
    from runtime.devices import Device


class QemuSystemTransport(LocalTransport):
    """``qemu-system-arm -M <board>`` runs on this machine; figures are EMULATED."""

    kind = "qemu-system"
    capabilities = Capabilities(emulated=True, python="none")
    forms = ("qemu-system",)

    def __init__(self, board: Board) -> None:
        super().__init__()
        self.board = board

    @classmethod
    def open(cls, spec: TransportSpec, device: Device) -> QemuSystemTransport:
        if not device.board:
            raise BenchError(f"device '{device.name}': no board in its profile; use --device netduinoplus2, "
                             "mps2-an386, mps2-an500 or mps3-an547")
        try:
            return cls(get_board(device.board))
        except KeyError as exc:
            raise BenchError(f"device '{device.name}': {exc.args[0]}") from None

    @property
    def label(self) -> str:
        return f"{QEMU} -M {self.board.qemu_machine}"

    def facts(self) -> Facts:
        """The emulated core and board; the host CPU that emulates them."""
        if shutil.which(QEMU) is None:
            raise BenchError(f"{QEMU} is not installed; apt-get install qemu-system-arm")
        version = run_local([QEMU, "--version"], 20, self.label).stdout.splitlines()
        try:
            host_cpu = cpu_model(Path("/proc/cpuinfo").read_text())
        except OSError:
            host_cpu = platform.processor()
        return Facts(machine=self.board.arch, kernel="", cpu=f"{self.board.core} emulated by "
                     f"{version[0] if version else QEMU} on {host_cpu}", governor="", glibc="", long_bit=32,
                     os=f"bare metal, {self.board.description}")
