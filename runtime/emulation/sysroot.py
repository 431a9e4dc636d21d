"""An aarch64 Python with numpy and LiteRT, run by ``qemu-aarch64 -L`` (no multiarch install).

Installing ``python3:arm64`` through dpkg multiarch would remove this machine's amd64 Python, so the
sysroot is assembled instead: apt (private state) resolves python3-numpy's arm64 dependencies on the
configured Debian mirror, the .debs are unpacked with ``dpkg-deb -x``, and pip puts the
``ai-edge-litert`` manylinux aarch64 wheel into ``site/``. Two fixes make it run under QEMU 7.2:
a fake Cortex-A72 ``/proc/cpuinfo`` (QEMU passes the host's x86 one through and LiteRT's cpuinfo
library crashes on it) and relative symlinks (absolute ones would point into the host).
Always ``-cpu cortex-a72``: ``-cpu max`` gives wrong XNNPACK int8 results (SVE/SME paths).
"""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.emulation.apt import PrivateApt
from runtime.emulation.cache import Log, Step, build_into, cache_root, digest, log_stderr
from runtime.errors import BenchError

PYTHON = "python3.11"
DEBIAN_PACKAGES = ("python3-numpy", "libstdc++6")
WHEELS = ("ai-edge-litert==2.3.0",)
RECIPE_VERSION = 2
FACTS = "sysroot.json"

# /proc/cpuinfo of one Cortex-A72 (r0p3) as Linux prints it; the features are those of QEMU's cortex-a72.
CORTEX_A72_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

"""


@dataclass(frozen=True)
class Target:
    """One emulated architecture a sysroot can be built for."""

    arch: str  # as runtime names it (uname -m): aarch64
    debian_arch: str
    triplet: str
    qemu: str
    cpu: str
    cpuinfo: str
    wheel_platform: str


TARGETS = {
    "aarch64": Target("aarch64", "arm64", "aarch64-linux-gnu", "qemu-aarch64", "cortex-a72", CORTEX_A72_CPUINFO,
                      "manylinux_2_27_aarch64"),
}
NO_LITERT = {
    "arm": "LiteRT publishes no armv7 wheel for CPython 3.11 (neither ai-edge-litert 2.3.0 nor "
           "tflite-runtime 2.14.0 has one), so there is no LiteRT baseline on qemu-armv7",
}


@dataclass(frozen=True)
class Sysroot:
    """A built sysroot: run its Python under QEMU with ``command``."""

    root: Path
    target: Target

    @property
    def arch(self) -> str:
        return self.target.arch

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / PYTHON

    def command(self, args: Sequence[str], qemu_args: Sequence[str] = ()) -> list[str]:
        """Host argv running the sysroot's Python with ``args`` (``qemu_args``, e.g. a plugin, go to QEMU)."""
        return [self.target.qemu, "-cpu", self.target.cpu, *qemu_args, "-L", str(self.root), str(self.python), *args]

    def env(self) -> dict[str, str]:
        """The guest's whole environment: nothing of the host's Python leaks in, hashing is deterministic,
        and the script's directory (whose listing varies) stays off ``sys.path``."""
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(self.root / "site"),
                "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONSAFEPATH": "1"}

    def facts(self) -> dict:
        """What the sysroot holds (packages, wheels), as recorded when it was built."""
        return json.loads((self.root / FACTS).read_text(encoding="utf-8"))


def _target(arch: str) -> Target:
    if arch in NO_LITERT:
        raise BenchError(NO_LITERT[arch])
    if arch not in TARGETS:
        raise BenchError(f"no Python sysroot recipe for '{arch}'; known: {', '.join(TARGETS)}")
    return TARGETS[arch]


def sysroot_path(arch: str) -> Path:
    """Where the sysroot of ``arch`` lives in the cache (named by its recipe, so a changed recipe rebuilds)."""
    target = _target(arch)
    key = digest(str(RECIPE_VERSION), target.debian_arch, target.cpuinfo, target.wheel_platform,
                 *DEBIAN_PACKAGES, *WHEELS)
    return cache_root() / f"sysroot-{arch}-{key}"


def built_sysroot(arch: str) -> Sysroot | None:
    """The sysroot of ``arch`` if it is already assembled (nothing is downloaded)."""
    root = sysroot_path(arch)
    return Sysroot(root, TARGETS[arch]) if (root / FACTS).is_file() else None


def _relative_symlinks(root: Path) -> None:
    """Point absolute symlinks at their file inside ``root`` (they would resolve into the host otherwise)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            link = Path(dirpath, name)
            if link.is_symlink():
                target = os.readlink(link)
                if target.startswith("/"):
                    link.unlink()
                    link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))


def _alternatives(root: Path, triplet: str) -> None:
    """The links Debian's update-alternatives would make for BLAS/LAPACK (maintainer scripts never ran)."""
    libdir = root / "usr" / "lib" / triplet
    for lib in ("blas/libblas.so.3", "lapack/liblapack.so.3"):
        if (libdir / lib).is_file() and not (libdir / Path(lib).name).exists():
            (libdir / Path(lib).name).symlink_to(lib)


def _unpack(debs: list[Path], root: Path, log: Log) -> None:
    for i, deb in enumerate(debs, 1):
        done = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"unpacking {deb.name} failed: {done.stderr.strip()[:200]}")
        if i % 10 == 0 or i == len(debs):
            log(f"  unpacked {i}/{len(debs)} packages")


def _install_wheels(target: Target, site: Path) -> list[str]:
    argv = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(site),
            "--platform", target.wheel_platform, "--python-version", "3.11", "--only-binary=:all:", "--no-deps",
            *WHEELS]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line] or done.stderr.splitlines()
        raise BenchError(f"pip could not install {' '.join(WHEELS)} for {target.wheel_platform}: "
                         f"{errors[-1] if errors else done.returncode}")
    return sorted(p.name[: -len(".dist-info")].replace("-", " ") for p in site.glob("*.dist-info"))


def _precompile(root: Path, final: Path) -> bool:
    """Byte-compile the sysroot's modules with this Python when it is 3.11 (same .pyc format), naming the
    files by their ``final`` path: emulated imports then skip compiling. False if this Python cannot
    (the guest then compiles in memory on every run)."""
    if sys.version_info[:2] != (3, 11):
        return False
    for sub in (Path("usr", "lib", PYTHON), Path("usr", "lib", "python3", "dist-packages"), Path("site")):
        compileall.compile_dir(root / sub, ddir=final / sub, quiet=2, workers=1)
    return True


def _smoke_test(sysroot: Sysroot) -> tuple[str, str]:
    """(Python version, numpy version) of the sysroot, once it has imported LiteRT's interpreter."""
    code = "import sys, numpy, ai_edge_litert.interpreter as i; print(sys.version.split()[0], numpy.__version__)"
    done = subprocess.run(sysroot.command(["-c", code]), env=sysroot.env(), capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BenchError(f"the assembled {sysroot.target.debian_arch} Python does not start under "
                         f"{sysroot.target.qemu}: {tail}")
    python, numpy = done.stdout.split()
    return python, numpy


def ensure_sysroot(arch: str = "aarch64", log: Log = log_stderr) -> Sysroot:
    """The cached sysroot of ``arch``; assembled on first use (about 45 MB of downloads)."""
    target = _target(arch)
    final = sysroot_path(arch)
    built = built_sysroot(arch)
    if built is not None:
        return built
    start = time.monotonic()
    with Step(log, f"assembling the {arch} Python + LiteRT sysroot in {final} (once)"), build_into(final) as root, \
            tempfile.TemporaryDirectory(prefix="bitat-edge-sysroot-") as tmp:
        apt = PrivateApt(Path(tmp) / "apt", target.debian_arch)
        with Step(log, f"  apt-get update ({target.debian_arch} indexes of the configured Debian mirror)"):
            apt.update()
        pinned = apt.resolve(list(DEBIAN_PACKAGES))
        debs_dir = Path(tmp) / "debs"
        debs_dir.mkdir()
        with Step(log, f"  downloading {len(pinned)} {target.debian_arch} packages"):
            debs = apt.download(pinned, debs_dir)
        _unpack(debs, root, log)
        _relative_symlinks(root)
        _alternatives(root, target.triplet)
        (root / "proc").mkdir()
        (root / "proc" / "cpuinfo").write_text(target.cpuinfo, encoding="ascii")
        with Step(log, f"  pip: {' '.join(WHEELS)} for {target.wheel_platform}"):
            wheels = _install_wheels(target, root / "site")
        with Step(log, "  byte-compiling the sysroot's Python modules"):
            precompiled = _precompile(root, final)
        with Step(log, f"  checking that the sysroot's Python imports numpy and LiteRT under {target.qemu}"):
            python, numpy = _smoke_test(Sysroot(root, target))
        facts = {
            "arch": arch, "recipe": RECIPE_VERSION, "python": python, "numpy": numpy, "wheels": wheels,
            "debian_packages": [f"{name}={version}" for name, version in pinned], "precompiled": precompiled,
            "build_seconds": round(time.monotonic() - start, 1),
        }
        (root / FACTS).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return Sysroot(final, target)
