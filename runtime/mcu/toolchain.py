"""Cross-compile C and assembly sources into a firmware ELF for a board (Debian's arm-none-eabi-gcc).

The C library is picolibc (``--specs=picolibc.specs``), used only for its string and math
functions: the startup code, vector table and linker script are ours (runtime/mcu/bsp, linker.py).
A program too large for the board fails to link; that becomes one sentence naming the memory, the
overflow and the board's limit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bitat_edge.atomic import write_text
from runtime.errors import BenchError
from runtime.mcu import linker
from runtime.mcu.boards import Board
from runtime.native.build import COMMON as ENGINE_FLAGS

GCC = "arm-none-eabi-gcc"
INSTALL_HINT = "apt-get install gcc-arm-none-eabi picolibc-arm-none-eabi"
BSP_DIR = Path(__file__).resolve().parent / "bsp"
# The engine's own flags (C11, warnings as errors, its floating-point contract), plus debug info and
# one section per function and object so that --gc-sections drops what the firmware does not use.
COMMON_FLAGS = (*ENGINE_FLAGS, "-g", "-ffunction-sections", "-fdata-sections", "--specs=picolibc.specs")
_OVERFLOW = re.compile(r"region [`'](?P<region>[\w.]+)' overflowed by (?P<bytes>\d+) bytes")
_ASSERT = re.compile(r"bitat-mcu: [^\n]*")


@dataclass(frozen=True)
class Firmware:
    """A linked program: its ELF, its linker map and the board it was linked for."""

    elf: Path
    map: Path
    board: Board


def require_toolchain() -> str:
    """The cross compiler's path, or a one-line error saying how to install it."""
    path = shutil.which(GCC)
    if path is None:
        raise BenchError(f"{GCC} is not installed; {INSTALL_HINT}")
    return path


def _link_error(board: Board, stderr: str) -> BenchError:
    regions = {r.name: r for r in (board.flash, board.ram, board.stack)}
    found = _OVERFLOW.search(stderr)
    if found:
        region = regions.get(found["region"])
        limit = f" ({region.size // 1024} KiB)" if region else ""
        return BenchError(
            f"the program does not fit {board.name}: its {found['region']}{limit} overflowed by "
            f"{int(found['bytes']):,} bytes; use a smaller model or a board with more memory"
        )
    custom = _ASSERT.search(stderr)
    if custom:
        return BenchError(custom[0])
    lines = [line for line in stderr.splitlines() if "error" in line.lower()] or stderr.splitlines() or ["no output"]
    return BenchError(f"building the firmware for {board.name} failed: {lines[0].strip()}")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True)


def build(board: Board, sources: Mapping[str, Sequence[Path]], out_dir: Path, *, include_dirs: Sequence[Path] = (),
          defines: Sequence[str] = (), stack_bytes: int = 8192, heap_bytes: int = 0, semihosted_libc: bool = False,
          name: str = "firmware") -> Firmware:
    """Compile ``sources`` (groups of files: ``{"engine": [...], "app": [...]}``) and the board support
    into ``out_dir/<name>.elf`` with its ``.map`` and ``.ld``. Objects go to ``out_dir/obj/<group>/``,
    so the map attributes every byte to a group (runtime/mcu/footprint.py). ``semihosted_libc`` links
    picolibc's semihosting layer (stdio, exit) for test programs; ``heap_bytes`` gives them a heap."""
    gcc = require_toolchain()
    groups = {"bsp": sorted(BSP_DIR.glob("*.c")), **{k: list(v) for k, v in sources.items()}}
    cflags = [*board.cflags, *COMMON_FLAGS, f"-I{BSP_DIR}", *(f"-I{d}" for d in include_dirs),
              *(f"-D{d}" for d in defines)]
    objects = []
    for group, files in groups.items():
        (out_dir / "obj" / group).mkdir(parents=True, exist_ok=True)
        for source in files:
            obj = out_dir / "obj" / group / f"{source.name}.o"
            done = _run([gcc, *cflags, "-c", str(source), "-o", str(obj)])
            if done.returncode != 0:
                first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip())
                raise BenchError(f"compiling {source.name} for {board.name} failed: {first.strip()}")
            objects.append(str(obj))
    script = write_text(out_dir / f"{name}.ld", linker.render(board, stack_bytes, heap_bytes=heap_bytes))
    elf, map_file = out_dir / f"{name}.elf", out_dir / f"{name}.map"
    done = _run([gcc, *board.cflags, "--specs=picolibc.specs", "-nostartfiles", "-T", str(script), *objects,
                 *(["--oslib=semihost"] if semihosted_libc else []),
                 f"-Wl,-Map={map_file},--gc-sections", "-o", str(elf), "-lm"])
    if done.returncode != 0:
        raise _link_error(board, done.stderr)
    return Firmware(elf, map_file, board)


def symbol_address(firmware: Firmware, symbol: str) -> int:
    """The address of ``symbol`` in the ELF (Thumb bit cleared)."""
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        raise BenchError(f"arm-none-eabi-nm is not installed; {INSTALL_HINT.split(' picolibc')[0]} binutils-arm-none-eabi")
    done = subprocess.run([nm, str(firmware.elf)], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16) & ~1
    raise BenchError(f"{firmware.elf.name}: no symbol {symbol}")
