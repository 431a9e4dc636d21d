"""The cache of built tools (plugin, sysroots) and the one way things are built into it.

Everything lives under ``$BITAT_EDGE_CACHE``, else ``$XDG_CACHE_HOME/bitat-edge``, else
``~/.cache/bitat-edge``. An entry is built in a temporary directory beside its final path and renamed
into place only when complete, so Ctrl-C, a crash or a failed download never leaves half an entry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

Log = Callable[[str], None]

_PARTIAL = ".partial-"


def log_stderr(message: str) -> None:
    """Default progress output: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Where built tools are cached (see the module docstring)."""
    explicit = os.environ.get("BITAT_EDGE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bitat-edge"


def digest(*parts: str | bytes) -> str:
    """A short content key for a cache entry: what it was built from."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(parent: Path, name: str) -> None:
    """Remove temporary build directories of ``name`` left by processes that were killed outright."""
    for stale in parent.glob(f".{name}{_PARTIAL}*"):
        pid_text = stale.name[len(f".{name}{_PARTIAL}"):].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def build_into(final: Path) -> Iterator[Path]:
    """Yield an empty directory to build ``final`` in; it becomes ``final`` when the block completes.

    On any exception (Ctrl-C included) the temporary directory is removed and ``final`` is untouched.
    If another process completed ``final`` first, its result is kept and ours is dropped.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(final.parent, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{_PARTIAL}{os.getpid()}-", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; cache entries are ordinary directories
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Step:
    """Prints '<what>...' when entered and '<what>: done in N s' when left (or 'interrupted')."""

    def __init__(self, log: Log, what: str) -> None:
        self.log, self.what = log, what

    def __enter__(self) -> Step:
        self.start = time.monotonic()
        self.log(f"{self.what}...")
        return self

    def __exit__(self, kind, value, traceback) -> None:
        seconds = time.monotonic() - self.start
        if kind is None:
            self.log(f"{self.what}: done in {seconds:.1f} s")
        elif issubclass(kind, KeyboardInterrupt):
            self.log(f"{self.what}: interrupted after {seconds:.1f} s; nothing half-built was kept")
