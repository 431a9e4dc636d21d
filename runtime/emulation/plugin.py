"""Build the instruction-counting QEMU plugin: fetch the plugin header of the installed QEMU, compile ours.

Debian's QEMU is built with TCG plugin support but ships no ``qemu-plugin.h``; the header is taken
from the orig tarball of Debian's qemu source package matching the installed upstream version
(about 24 MB, downloaded once through a private apt state; the header is cached, never committed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from runtime.emulation.apt import PrivateApt
from runtime.emulation.cache import Log, Step, build_into, cache_root, digest, log_stderr
from runtime.errors import BenchError

SOURCE = Path(__file__).resolve().parents[1] / "native" / "qemu_plugin" / "insn_count.c"
LIBRARY = "libinsn_count.so"
HEADER = "qemu-plugin.h"
CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-fPIC", "-shared")


def _dpkg_query(*args: str) -> str:
    done = subprocess.run(["dpkg-query", *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def installed_qemu(qemu: str = "qemu-aarch64") -> tuple[str, str]:
    """(Debian source version, upstream version) of the package that installed ``qemu``."""
    binary = shutil.which(qemu)
    if binary is None:
        raise BenchError(f"{qemu}: not installed; apt-get install qemu-user")
    owner = _dpkg_query("-S", os.path.realpath(binary)).split(":", 1)[0]
    version = _dpkg_query("-W", "-f", "${source:Version}", owner) if owner else ""
    if not version:
        raise BenchError(f"{binary}: not installed by a Debian package, so its plugin header cannot be fetched; "
                         "install Debian's qemu-user")
    upstream = re.sub(r"^\d+:", "", version).rsplit("-", 1)[0]
    return version, upstream


def _extract_header(orig: Path, dest: Path) -> None:
    with tarfile.open(orig, "r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith("/include/qemu/" + HEADER):
                source = tar.extractfile(member)
                assert source is not None
                dest.write_bytes(source.read())
                return
    raise BenchError(f"{orig.name}: has no include/qemu/{HEADER}")


def ensure_header(log: Log = log_stderr) -> Path:
    """The cached ``qemu-plugin.h`` of the installed QEMU's upstream version; fetched on first use."""
    version, upstream = installed_qemu()
    final = cache_root() / "qemu-plugin-api" / upstream
    if (final / HEADER).is_file():
        return final / HEADER
    with Step(log, f"fetching {HEADER} from Debian's qemu {upstream} source package (about 24 MB, once)"), \
            build_into(final) as out, tempfile.TemporaryDirectory(prefix="bitat-edge-apt-") as tmp:
        apt = PrivateApt(Path(tmp) / "apt")
        apt.update()
        download = Path(tmp) / "src"
        download.mkdir()
        try:
            apt.source("qemu", version, download)
        except BenchError:  # the mirror moved on to a newer Debian revision: same upstream tarball
            apt.source("qemu", None, download)
        origs = sorted(download.glob(f"qemu_{upstream}.orig.tar.*"))
        if not origs:
            raise BenchError(f"the mirror's qemu source package is not upstream {upstream} (the installed QEMU); "
                             "upgrade qemu-user (apt-get install --only-upgrade qemu-user)")
        _extract_header(origs[0], out / HEADER)
    return final / HEADER


def _plugin_dir(header: Path) -> Path:
    """The cache entry of the plugin built from this source against ``header``."""
    compiler = os.environ.get("CC", "gcc")
    return cache_root() / "qemu-plugin" / digest(SOURCE.read_bytes(), header.read_bytes(), compiler, *CFLAGS)


def built_plugin() -> Path | None:
    """The plugin if it is already built for the installed QEMU (nothing is fetched or compiled)."""
    header = cache_root() / "qemu-plugin-api" / installed_qemu()[1] / HEADER
    library = _plugin_dir(header) / LIBRARY if header.is_file() else None
    return library if library is not None and library.is_file() else None


def ensure_plugin(log: Log = log_stderr) -> Path:
    """The compiled plugin (``libinsn_count.so``), rebuilt only when its source or the header changes."""
    header = ensure_header(log)
    compiler = os.environ.get("CC", "gcc")
    final = _plugin_dir(header)
    if (final / LIBRARY).is_file():
        return final / LIBRARY
    with Step(log, f"compiling the instruction-counting plugin {SOURCE.name}"), build_into(final) as out:
        argv = [compiler, *CFLAGS, f"-I{header.parent}", str(SOURCE), "-o", str(out / LIBRARY)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise BenchError(f"{compiler}: C compiler not found; apt-get install gcc") from None
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise BenchError(f"compiling {SOURCE.name} failed: {first}")
    return final / LIBRARY
