"""A small ELF reader: the target architecture of a binary and the glibc versions it needs.

Replaces ``readelf -h`` / ``objdump -T | grep GLIBC_``, which a user's machine may lack. Reads the
ELF header, the program headers (PT_INTERP: dynamically linked?) and the GNU symbol-version
sections (``.gnu.version_r`` needs, ``.gnu.version_d`` definitions).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import BenchError

MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64"}
_PT_INTERP = 3
_SHT_GNU_VERDEF = 0x6FFFFFFD
_SHT_GNU_VERNEED = 0x6FFFFFFE


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
    """Parse ``path``; raise ``BenchError`` if it is missing or not an ELF file."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BenchError(f"{source}: file not found") from None
    if data[:4] != b"\x7fELF" or len(data) < 52:
        raise BenchError(f"{source}: not an ELF executable (bad magic); pass a binary built for the target")
    bits = {1: 32, 2: 64}.get(data[4])
    endian = {1: "<", 2: ">"}.get(data[5])
    if bits is None or endian is None:
        raise BenchError(f"{source}: unsupported ELF class/encoding ({data[4]}, {data[5]})")

    def unpack(fmt: str, pos: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(endian + fmt, data, pos)
        except struct.error:
            raise BenchError(f"{source}: truncated ELF file (offset {pos})") from None

    word = "Q" if bits == 64 else "I"
    (_, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = unpack(
        f"HHI{word}{word}{word}IHHHHHH", 16
    )
    dynamic = False
    for i in range(phnum):
        if unpack("I", phoff + i * phentsize)[0] == _PT_INTERP:
            dynamic = True
    sections = []
    for i in range(shnum):
        pos = shoff + i * shentsize
        if bits == 64:
            _, sh_type, _, _, offset, size, link, info, _, _ = unpack("IIQQQQIIQQ", pos)
        else:
            _, sh_type, _, _, offset, size, link, info, _, _ = unpack("IIIIIIIIII", pos)
        sections.append((sh_type, offset, size, link, info))

    def cstring(table: int, offset: int) -> str:
        start = sections[table][1] + offset
        end = data.find(b"\0", start)
        return data[start:end if end >= 0 else len(data)].decode("ascii", "replace")

    info = ElfInfo(source, MACHINES.get(machine, f"unknown({machine})"), bits, dynamic)
    for sh_type, offset, _, link, count in sections:
        if sh_type == _SHT_GNU_VERNEED:
            pos = offset
            for _ in range(count):
                _, cnt, file_name, aux, nxt = unpack("HHIII", pos)
                names = info.needed_versions.setdefault(cstring(link, file_name), set())
                aux_pos = pos + aux
                for _ in range(cnt):
                    _, _, _, name, aux_next = unpack("IHHII", aux_pos)
                    names.add(cstring(link, name))
                    aux_pos += aux_next
                if not nxt:
                    break
                pos += nxt
        elif sh_type == _SHT_GNU_VERDEF:
            pos = offset
            for _ in range(count):
                _, _, _, cnt, _, aux, nxt = unpack("HHHHIII", pos)
                if cnt:
                    info.defined_versions.add(cstring(link, unpack("II", pos + aux)[0]))
                if not nxt:
                    break
                pos += nxt
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
