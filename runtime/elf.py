"""What the harness needs from an ELF file: its architecture, word size, whether it is dynamically
linked, and the glibc versions it needs (a program) or provides (a libc), read with pyelftools.

Replaces ``readelf -h`` / ``objdump -T | grep GLIBC_``, which a user's machine may lack. Ours is only
the summary: the highest ``GLIBC_x.y`` needed or defined. A truncated or corrupt file is a ``BenchError``.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection

from runtime.errors import BenchError

MACHINES = {"EM_386": "x86", "EM_ARM": "arm", "EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}
_CORRUPT = (ELFError, struct.error, ValueError, KeyError, IndexError, AttributeError, TypeError, OverflowError)


@dataclass
class ElfInfo:
    """What the harness needs to know about an executable or shared library."""

    path: str
    machine: str  # "aarch64", "arm", "x86_64", ... or "unknown(<e_machine>)"
    bits: int  # 32 or 64
    dynamic: bool  # has a PT_INTERP (needs a loader and shared libraries, e.g. qemu's -L sysroot)
    needed_versions: dict[str, set[str]] = field(default_factory=dict)  # library -> {"GLIBC_2.17", ...}
    defined_versions: set[str] = field(default_factory=set)  # versions a library provides

    @property
    def glibc_required(self) -> tuple[int, ...] | None:
        """The highest GLIBC_x.y this binary needs, or None when it needs no versioned glibc symbol."""
        return _max_glibc(v for versions in self.needed_versions.values() for v in versions)

    @property
    def glibc_provided(self) -> tuple[int, ...] | None:
        """For a libc.so: the highest GLIBC_x.y it defines (its release)."""
        return _max_glibc(self.defined_versions)


def _max_glibc(names: object) -> tuple[int, ...] | None:
    found = []
    for name in names:  # type: ignore[attr-defined]
        if name.startswith("GLIBC_") and name[6:7].isdigit():
            try:
                found.append(tuple(int(part) for part in name[6:].split(".")))
            except ValueError:
                continue
    return max(found) if found else None


def format_version(version: tuple[int, ...] | None) -> str:
    """(2, 36) -> '2.36'; None -> 'none'."""
    return ".".join(map(str, version)) if version else "none"


def parse_version(text: str) -> tuple[int, ...] | None:
    """'2.36' -> (2, 36); anything else -> None."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return None


def read_elf(path: str | Path) -> ElfInfo:
    """Parse ``path``; raise ``BenchError`` if it is missing, not an ELF file, truncated or corrupt."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BenchError(f"{source}: file not found") from None
    except OSError as exc:
        raise BenchError(f"{source}: cannot read it ({exc.strerror})") from None
    if data[:4] != b"\x7fELF":
        raise BenchError(f"{source}: not an ELF executable (bad magic); pass a binary built for the target")
    try:
        return _summary(ELFFile(io.BytesIO(data)), source)
    except _CORRUPT as exc:  # pyelftools reports damage as whichever error the bad field causes
        raise BenchError(f"{source}: truncated ELF file or corrupt data ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); pass an intact binary") from None


def elf_symbol(path: str | Path, name: str) -> int:
    """The address of function ``name`` in the ELF file ``path`` (ARM: without the Thumb bit)."""
    read_elf(path)  # one-line errors for missing or damaged files
    with Path(path).open("rb") as handle:
        elf = ELFFile(handle)
        table = elf.get_section_by_name(".symtab")
        symbols = table.get_symbol_by_name(name) if table is not None else None
        if not symbols:
            raise BenchError(f"{path}: no symbol {name} (a stripped binary?); rebuild it")
        value = symbols[0]["st_value"]
        return value & ~1 if elf["e_machine"] == "EM_ARM" else value


def _summary(elf: ELFFile, source: str) -> ElfInfo:
    machine = elf["e_machine"]
    info = ElfInfo(source, MACHINES.get(machine, f"unknown({machine})"), elf.elfclass,
                   dynamic=any(True for _ in elf.iter_segments("PT_INTERP")))
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for need, auxiliaries in section.iter_versions():
                info.needed_versions.setdefault(need.name, set()).update(aux.name for aux in auxiliaries)
                if not need["vn_next"]:  # the chain ends here, whatever the (possibly corrupt) count says
                    break
        elif isinstance(section, GNUVerDefSection):
            for definition, auxiliaries in section.iter_versions():
                info.defined_versions.add(next(auxiliaries).name)
                if not definition["vd_next"]:
                    break
    return info


def normalize_arch(machine: str) -> str:
    """Map ``uname -m`` / ELF / ABI spellings onto aarch64, arm, x86_64."""
    value = machine.strip().lower()
    if value in ("aarch64", "arm64", "arm64-v8a", "armv8l") or value.startswith("aarch64"):
        return "aarch64"
    if value.startswith("armv7") or value.startswith("armeabi") or value in ("arm", "armhf", "armv7"):
        return "arm"
    if value in ("x86_64", "amd64"):
        return "x86_64"
    return value
