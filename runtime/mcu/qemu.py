"""Run a firmware on its board under ``qemu-system-arm`` with semihosting, optionally counting instructions.

Semihosting file paths are relative to the run directory (QEMU's working directory); the guest's
exit status becomes QEMU's. Counting loads the instruction-count plugin (runtime/emulation) with
the firmware's ``bsp_mark`` as the marker: one count per marker hit, exact and deterministic.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import BenchError, TransportTimeout
from runtime.mcu.toolchain import Firmware, symbol_address

if TYPE_CHECKING:
    from runtime.emulation.counts import InsnCounts

QEMU = "qemu-system-arm"
MARKER = "bsp_mark"


@dataclass(frozen=True)
class Run:
    """How a firmware run ended: exit status, console text, and the counts when counting."""

    returncode: int
    console: str
    counts: InsnCounts | None


def command(firmware: Firmware, args: str = "") -> list[str]:
    """The QEMU command line that runs ``firmware`` (without the counting plugin)."""
    return [QEMU, "-M", firmware.board.qemu_machine, "-nographic", "-monitor", "none", "-serial", "null",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(firmware.elf.resolve()),
            *(["-append", args] if args else [])]


def run(firmware: Firmware, run_dir: Path, args: str = "", count: bool = False, timeout: float = 600.0) -> Run:
    """Run ``firmware`` in ``run_dir``; ``count`` records instructions between ``bsp_mark`` calls."""
    if shutil.which(QEMU) is None:
        raise BenchError(f"{QEMU} is not installed; apt-get install qemu-system-arm")
    argv = command(firmware, args)
    counts_file = run_dir / "counts.txt"
    if count:
        from runtime.emulation.counts import plugin_args
        from runtime.emulation.plugin import ensure_plugin

        argv += plugin_args(ensure_plugin(), counts_file.resolve(), symbol_address(firmware, MARKER))
    try:
        done = subprocess.run(argv, cwd=run_dir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TransportTimeout(f"{firmware.board.name}: the firmware ran longer than {timeout:.0f} s under QEMU "
                               "and was stopped") from None
    console = done.stdout + done.stderr
    counts = None
    if count and done.returncode == 0:
        from runtime.emulation.counts import read_counts

        counts = read_counts(counts_file)
    return Run(done.returncode, console, counts)
