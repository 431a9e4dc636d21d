"""Build the engine's programs for a target with the system's (cross) compilers.

    python -m runtime.native.build [TARGET ...]       # default: host

Targets: ``host`` (this machine), ``host-asan`` (AddressSanitizer + UBSan, for the fuzz and self
tests), ``host-reference`` (reference binary and float convolutions only), ``aarch64`` and ``armv7`` (static
Linux binaries: qemu-user, a Raspberry Pi, Android), ``cortex-m4`` (compile check of the engine
sources, no programs). A build goes to ``<out>/<target>/`` (default ``runtime/native/build``) and
is redone only when the sources, flags or compiler change.

Debian packages: gcc (host), gcc-aarch64-linux-gnu + libc6-dev-arm64-cross (aarch64),
gcc-arm-linux-gnueabihf + libc6-dev-armhf-cross (armv7), gcc-arm-none-eabi (cortex-m4).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

NATIVE = Path(__file__).resolve().parent
DEFAULT_OUT = NATIVE / "build"
PROGRAMS = ("bench", "selftest", "fuzz")
WARNINGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
# -ffp-contract=off: the binary convolution's float output transform must round like LCE's
# (multiply, then add); kernels that may fuse use fmaf explicitly.
COMMON = [*WARNINGS, "-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]


class BuildError(RuntimeError):
    """A compiler is missing or the sources do not compile; the message says which and how to fix it."""


@dataclass(frozen=True)
class Target:
    """How to compile for one target."""

    name: str
    compiler: str
    flags: tuple[str, ...]
    package: str  # the Debian package that provides the compiler
    link: bool = True  # False: compile the engine only (no libc to link programs against)


def _host_flags() -> tuple[str, ...]:
    """x86-64: popcnt and fma when this CPU has them (host builds run only here; fma rounds float
    convolutions the way TFLite's x86 kernels do)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return ()
    try:
        cpu = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ()
    return tuple(f"-m{feature}" for feature in ("popcnt", "fma") if feature in cpu)


_HOST_FLAGS = _host_flags()

TARGETS: dict[str, Target] = {
    "host": Target("host", "gcc", _HOST_FLAGS, "gcc"),
    "host-asan": Target("host-asan", "gcc", (*_HOST_FLAGS, "-g", "-fsanitize=address,undefined",
                                             "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"), "gcc"),
    "host-reference": Target("host-reference", "gcc", (*_HOST_FLAGS, "-DBE_BCONV_REFERENCE",
                                                                     "-DBE_CONV_REFERENCE"), "gcc"),
    "aarch64": Target("aarch64", "aarch64-linux-gnu-gcc", ("-static", "-march=armv8-a", "-mtune=cortex-a72"),
                      "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
    "armv7": Target("armv7", "arm-linux-gnueabihf-gcc", ("-static", "-march=armv7-a", "-mfpu=neon-vfpv4",
                                                          "-mfloat-abi=hard", "-mtune=cortex-a7"),
                    "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross"),
    "cortex-m4": Target("cortex-m4", "arm-none-eabi-gcc", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                                            "-mfpu=fpv4-sp-d16"), "gcc-arm-none-eabi", link=False),
}


def engine_sources() -> list[Path]:
    """The engine's C sources (no programs)."""
    return sorted((NATIVE / "src").glob("*.c")) + sorted((NATIVE / "src" / "kernels").glob("*.c"))


def _fingerprint(target: Target, compiler: str) -> str:
    digest = hashlib.sha256()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    digest.update("\0".join([version, *target.flags, *COMMON]).encode())
    for path in sorted(NATIVE.glob("include/*.h")) + sorted((NATIVE / "src").rglob("*.[chS]")) + \
            sorted((NATIVE / "tools").glob("*.c")):
        digest.update(path.relative_to(NATIVE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _run_all(jobs: list[list[str]], target: Target) -> None:
    """Run compiler command lines, two at a time; the first failure raises with its first error line."""
    pending = list(jobs)
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = [subprocess.Popen(job, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for job in batch]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                first = next((line for line in err.splitlines() if "error" in line), err.strip()[:300])
                raise BuildError(f"{target.name} build failed: {first}")


def available(target_name: str) -> bool:
    """Whether this machine has the compiler for ``target_name``."""
    return shutil.which(TARGETS[target_name].compiler) is not None


def build(target_name: str = "host", out: Path | None = None) -> Path:
    """Compile ``target_name``; return its directory (holding the programs). Raises ``BuildError``."""
    if target_name not in TARGETS:
        raise BuildError(f"unknown target '{target_name}'; one of {', '.join(TARGETS)}")
    target = TARGETS[target_name]
    compiler = shutil.which(target.compiler)
    if compiler is None:
        raise BuildError(f"{target.compiler} not found; install it (Debian: apt-get install {target.package})")
    directory = (out or DEFAULT_OUT) / target.name
    stamp = directory / "stamp"
    fingerprint = _fingerprint(target, compiler)
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    base = [compiler, *COMMON, *target.flags, f"-I{NATIVE / 'include'}", f"-I{NATIVE / 'src'}"]
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        objects = [str(Path(tmp) / f"{src.parent.name}_{src.stem}.o") for src in engine_sources()]
        _run_all([[*base, "-c", str(src), "-o", obj] for src, obj in zip(engine_sources(), objects, strict=True)],
                 target)
        if target.link:
            _run_all([[*base, str(NATIVE / "tools" / f"{name}.c"), *objects, "-o", str(Path(tmp) / f"bitat_{name}"),
                       "-lm"] for name in PROGRAMS], target)
            for name in PROGRAMS:
                os.replace(Path(tmp) / f"bitat_{name}", directory / f"bitat_{name}")
    stamp.write_text(fingerprint)
    return directory


def program(name: str, target_name: str = "host", out: Path | None = None) -> Path:
    """The path of program ``name`` (bench, selftest, fuzz) for ``target_name``, built if needed."""
    return build(target_name, out) / f"bitat_{name}"


def main(argv: list[str]) -> int:
    for name in argv or ["host"]:
        try:
            print(build(name))
        except BuildError as exc:
            print(f"build.py: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
