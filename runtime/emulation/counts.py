"""Load the instruction-counting plugin into a QEMU command line and read what it wrote.

The plugin's file (see ``runtime/native/qemu_plugin/insn_count.c``) has one line per event:
``marker N`` (instructions since the previous marker), then ``vcpus N`` and ``total N`` at exit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BenchError


@dataclass(frozen=True)
class InsnCounts:
    """What one counted run executed. ``markers[i]``: instructions between marker hit i-1 (or the start) and i."""

    markers: tuple[int, ...]
    total: int
    vcpus: int


# The system call that marks a region from Python (os.getppid), by guest architecture.
GETPPID = {"aarch64": 173, "arm": 64}


def plugin_args(plugin: Path, out: Path, marker: int | None = None, syscall: int | None = None) -> list[str]:
    """QEMU arguments loading the plugin, which writes to ``out``; markers: the instruction at address
    ``marker`` and/or each system call number ``syscall``."""
    for path in (plugin, out):
        if "," in str(path):
            raise BenchError(f"{path}: QEMU plugin arguments cannot contain ','; use a path without commas")
    spec = f"{plugin},out={out}"
    spec += f",marker={marker:#x}" if marker is not None else ""
    spec += f",syscall={syscall}" if syscall is not None else ""
    return ["-plugin", spec]


def read_counts(path: Path) -> InsnCounts:
    """Parse the plugin's file; a missing ``total`` line means the guest did not exit normally."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: instruction counts not readable ({exc})") from None
    markers: list[int] = []
    fields: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        key, _, value = line.partition(" ")
        if key not in ("marker", "vcpus", "total") or not value.isdigit():
            raise BenchError(f"{path}:{number}: not an instruction-count line: {line[:60]!r}")
        if key == "marker":
            markers.append(int(value))
        else:
            fields[key] = int(value)
    if "total" not in fields:
        raise BenchError(f"{path}: no total: the emulated program did not exit normally")
    return InsnCounts(tuple(markers), fields["total"], fields.get("vcpus", 0))


def single_threaded(counts: InsnCounts, what: str) -> InsnCounts:
    """``counts`` if the guest ran one thread (the only case in which they are exact)."""
    if counts.vcpus != 1:
        raise BenchError(f"{what}: the guest ran {counts.vcpus} threads; instruction counts are exact only "
                         "with one (use 1 interpreter thread)")
    return counts


def marked_invokes(counts: InsnCounts, invokes: int) -> tuple[list[int], int]:
    """Instructions of each of ``invokes`` invokes marked as ``remote_measure.py --mark-invokes`` does,
    less the cost of the marking itself (its final empty pair), and that cost."""
    markers = counts.markers
    if invokes < 1 or len(markers) != 2 * invokes + 2:
        raise BenchError(f"expected {2 * invokes + 2} markers for {invokes} marked invokes, got {len(markers)}; "
                         "did something else in the guest make the marking system call?")
    empty = markers[-1]
    return [markers[2 * i + 1] - empty for i in range(invokes)], empty
