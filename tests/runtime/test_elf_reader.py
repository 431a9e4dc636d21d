"""The ELF reader against real binaries (this machine's, and a cross-compiled aarch64 one)."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.elf import format_version, normalize_arch, parse_version, read_elf
from runtime.errors import BenchError


def _readelf_glibc(path: str) -> str:
    out = subprocess.run(["readelf", "-V", "-W", path], capture_output=True, text=True, check=True).stdout
    versions = {tuple(int(p) for p in word[6:].split(".")) for word in out.replace(":", " ").split()
                if word.startswith("GLIBC_") and word[6:7].isdigit()}
    return format_version(max(versions))


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils readelf not installed")
def test_host_python_matches_readelf():
    info = read_elf(sys.executable if Path(sys.executable).stat().st_size > 100_000 else shutil.which("ls"))
    assert info.machine == normalize_arch(platform.machine()) and info.bits == 64 and info.dynamic
    ls = shutil.which("ls")
    assert format_version(read_elf(ls).glibc_required) == _readelf_glibc(ls)


def test_cross_compiled_aarch64_program(aarch64_program: Path):
    info = read_elf(aarch64_program)
    assert (info.machine, info.bits, info.dynamic) == ("aarch64", 64, True)
    assert info.glibc_required is not None and info.glibc_required >= (2, 17)
    assert any(lib.startswith("libc.so") for lib in info.needed_versions)


def test_aarch64_libc_defines_its_release():
    libc = Path("/usr/aarch64-linux-gnu/lib/libc.so.6")
    if not libc.is_file():
        pytest.skip("no aarch64 cross libc (libc6-arm64-cross)")
    provided = read_elf(libc).glibc_provided
    assert provided is not None and provided >= (2, 17)


def test_not_an_elf_and_missing(tmp_path: Path):
    bogus = tmp_path / "script.sh"
    bogus.write_text("#!/bin/sh\necho hi\n" * 10)
    with pytest.raises(BenchError, match="not an ELF executable"):
        read_elf(bogus)
    with pytest.raises(BenchError, match="file not found"):
        read_elf(tmp_path / "nope")
    truncated = tmp_path / "trunc"
    truncated.write_bytes(Path(shutil.which("ls")).read_bytes()[:200])
    with pytest.raises(BenchError, match="truncated ELF"):
        read_elf(truncated)


def test_version_helpers():
    assert parse_version("2.36") == (2, 36) and parse_version("bionic") is None
    assert format_version((2, 3, 4)) == "2.3.4" and format_version(None) == "none"
    assert [normalize_arch(a) for a in ("arm64", "armv7l", "arm64-v8a", "amd64", "aarch64")] == [
        "aarch64", "arm", "aarch64", "x86_64", "aarch64"]
