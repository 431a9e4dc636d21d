"""Directories a command writes as a whole (a deploy bundle, a kept-aside report): refuse what is not
ours, replace what is ours atomically.

``check`` runs before any work: an existing ``out`` must be empty or of the writer's own kind; it
must not be a file, a symbolic link, the working directory or one of its parents, nor hold one of
the command's inputs. Each refusal is one sentence naming ``out``; nothing is touched.

``replace`` builds the new directory in a hidden sibling ``.NAME.new-XXXX`` and swaps it with ``out``
in one ``renameat2(RENAME_EXCHANGE)`` (Linux >= 3.15 with glibc >= 2.28; ext4, xfs, btrfs, tmpfs, overlayfs),
so at every instant ``out`` is the complete old or the complete new directory; the old one is deleted
after the swap. Why an exchange rather than a ``NAME -> NAME.vN`` symlink flip (also atomic): the
bundle stays a plain directory that ``cp -r``, ``scp``, ``rsync`` and ``tar`` copy as it is, and bundles
written before need no migration. Where the exchange is missing (another OS, a filesystem that
refuses it: EINVAL/ENOSYS/ENOTSUP) ``replace`` falls back to two renames, ``out -> .NAME.old-XXXX`` then
new -> ``out``; a kill between the two leaves ``out`` missing and the complete old directory beside it,
and the next ``replace`` of ``out`` puts it back before anything else.

Writers of one parent directory are serialised by an advisory ``flock`` on it; under the lock the
leftovers of a killed writer (``.NAME.new-*``, ``.NAME.old-*``) are cleared.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

AT_FDCWD = -100  # linux/fcntl.h
RENAME_EXCHANGE = 2  # linux/fs.h
_NO_EXCHANGE = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)
Ownership = Callable[[Path], str]
"""Why a non-empty directory is not of the writer's kind ("" when it is)."""


def _short_list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check(out: Path, *, not_ours: Ownership, what: str, inputs: Iterable[Path | None] = (),
          error: type[Exception] = ValueError) -> None:
    """Refuse ``out`` (raise ``error``, one line) unless writing a ``what`` there replaces only a previous one."""
    if out.is_symlink():
        raise error(f"{out}: is a symbolic link; pass the directory it points to, or a new one, for the {what}")
    if out.exists() and not out.is_dir():
        raise error(f"{out}: is a file, not a directory; pass a new or empty directory for the {what}")
    resolved, cwd = out.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        where = "the current directory" if resolved == cwd else "a parent of the current directory"
        raise error(f"{out}: is {where}; pass a new directory for the {what}")
    for path in inputs:
        if path is not None and resolved in path.resolve().parents:
            raise error(f"{out}: holds the input {path}; pass another directory for the {what}")
    if out.is_dir():
        entries = [p.name for p in out.iterdir()]
        reason = not_ours(out) if entries else ""
        if reason:
            raise error(f"{out}: exists and is not a {what} ({reason}; it holds {_short_list(entries)}); nothing "
                        f"was changed: pass a new or empty directory, or remove it yourself")


def exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (``renameat2`` with ``RENAME_EXCHANGE``); ``OSError`` when unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


@contextlib.contextmanager
def _locked(parent: Path) -> Iterator[None]:
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(out: Path) -> None:
    """Clear what a killed ``replace`` of ``out`` left beside it; put back an old ``out`` caught between the
    fallback's two renames. Call with the parent's lock held."""
    parent, name = out.parent, out.name
    for old in sorted(parent.glob(f".{name}.old-*")):
        if not out.exists() and not out.is_symlink():
            os.rename(old, out)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for new in parent.glob(f".{name}.new-*"):
        shutil.rmtree(new, ignore_errors=True)


def _swap_in(new: Path, out: Path) -> None:
    """Put the complete directory ``new`` at ``out``; what was at ``out`` ends up at ``new``."""
    if not out.exists():
        os.rename(new, out)
        return
    try:
        exchange(new, out)
    except OSError as exc:
        if exc.errno not in _NO_EXCHANGE:
            raise
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(new, out)  # a kill between the two renames: ``recover`` puts ``old`` back
        os.rename(old, new)


@contextlib.contextmanager
def replace(out: Path) -> Iterator[Path]:
    """Yield an empty directory to fill; on clean exit it replaces ``out`` atomically (see the module docstring).

    On an exception the new directory is deleted and ``out`` is left as it was. ``OSError`` propagates.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out.parent):
        recover(out)
        new = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        try:
            umask = os.umask(0o022)
            os.umask(umask)
            new.chmod(0o777 & ~umask)  # mkdtemp makes a private 0700 directory; the result is an ordinary one
            yield new
            for entry in new.iterdir():
                if entry.is_file():
                    with open(entry, "rb") as handle:
                        os.fsync(handle.fileno())
            _fsync_dir(new)
            _swap_in(new, out)
            _fsync_dir(out.parent)
        finally:
            shutil.rmtree(new, ignore_errors=True)  # the old directory, or the unfinished new one
