"""apt with a private state directory: Debian source packages and other architectures' packages
without touching the system (no deb-src line, no ``dpkg --add-architecture``, no root-wide install).

It reads the Debian mirrors this machine's apt already uses (``apt-get indextargets``), writes its own
sources list, index files and cache under one directory, and sees an empty dpkg status, so it can
resolve, download and fetch sources for any architecture the mirror carries.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BenchError

_INST = re.compile(r"^Inst (?P<name>\S+) \((?P<version>\S+) ")


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BenchError(f"{argv[0]}: not found; {what} needs Debian's apt (this tool supports Debian 12)") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("E:")] or done.stderr.splitlines()
        raise BenchError(f"{what} failed: {errors[-1] if errors else f'exit {done.returncode}'}")
    return done.stdout


def debian_mirrors() -> list[tuple[str, str, str]]:
    """(URI, suite, component) of every Debian binary index this machine's apt is configured for."""
    out = _run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE) $(COMPONENT)",
                "Created-By: Packages", "Origin: Debian"], "reading apt's configured mirrors")
    mirrors = sorted({tuple(line.split()) for line in out.splitlines() if len(line.split()) == 3})
    if not mirrors:
        raise BenchError("apt has no Debian mirror configured (apt-get indextargets lists none); "
                         "add Debian 12 (bookworm) to /etc/apt/sources.list and run apt-get update")
    return mirrors  # type: ignore[return-value]


@dataclass
class PrivateApt:
    """apt-get confined to ``root``: binary packages of ``arch`` (a dpkg architecture), or source packages."""

    root: Path
    arch: str | None = None  # None: source indexes (deb-src) instead of binary ones

    def __post_init__(self) -> None:
        for sub in ("lists/partial", "cache/archives/partial", "parts", "preferences.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        kind = f"deb [arch={self.arch}]" if self.arch else "deb-src"
        lines = [f"{kind} {uri} {suite} {component}" for uri, suite, component in debian_mirrors()]
        (self.root / "sources.list").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _options(self) -> list[str]:
        r = self.root
        settings = {
            **({"APT::Architecture": self.arch, "APT::Architectures::": self.arch} if self.arch else {}),
            "Dir::Etc::SourceList": r / "sources.list", "Dir::Etc::SourceParts": r / "parts",
            "Dir::Etc::Preferences": r / "preferences", "Dir::Etc::PreferencesParts": r / "preferences.d",
            "Dir::State::Lists": r / "lists", "Dir::Cache": r / "cache", "Dir::State::status": r / "status",
            "APT::Sandbox::User": "root",
        }
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def update(self) -> None:
        """Download the index files (a few MB)."""
        _run(["apt-get", "-q", *self._options(), "update"], f"apt-get update ({self.arch or 'source'} indexes)")

    def resolve(self, packages: list[str]) -> list[tuple[str, str]]:
        """(name, version) of ``packages`` and every dependency, as apt would install them on an empty system."""
        out = _run(["apt-get", *self._options(), "-s", "install", "--no-install-recommends", *packages],
                   f"resolving {self.arch} dependencies of {' '.join(packages)}")
        return [(m["name"], m["version"]) for m in map(_INST.match, out.splitlines()) if m]

    def download(self, pinned: list[tuple[str, str]], dest: Path) -> list[Path]:
        """Download the .deb files of ``pinned`` (name, version) into ``dest``."""
        _run(["apt-get", "-q", *self._options(), "download", *(f"{n}:{self.arch}={v}" for n, v in pinned)],
             f"downloading {len(pinned)} {self.arch} packages", cwd=dest)
        return sorted(dest.glob("*.deb"))

    def source(self, package: str, version: str | None, dest: Path) -> None:
        """Download (never build) the source package files of ``package`` into ``dest``."""
        spec = f"{package}={version}" if version else package
        _run(["apt-get", "-q", *self._options(), "source", "-d", "--only-source", spec],
             f"downloading the source package {spec}", cwd=dest)
