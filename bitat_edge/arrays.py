"""Reading the ``.npz`` array sets that cross stage boundaries (eval and calibration images), safely.

A damaged ``.npz`` makes ``zipfile``/``numpy`` raise a dozen exception types (``BadZipFile``,
``zlib.error``, ``NotImplementedError`` for a garbled version field, ``tokenize.TokenError`` for a
garbled ``.npy`` header, ``EOFError``, ...); every one of them is the caller's one-line error here,
naming the file.
"""

from __future__ import annotations

import os
import struct
import tokenize
import zipfile
import zlib

import numpy as np

_DAMAGED = (OSError, ValueError, EOFError, KeyError, IndexError, NotImplementedError, RuntimeError, OverflowError,
            MemoryError, SyntaxError, struct.error, tokenize.TokenError, zlib.error, zipfile.BadZipFile,
            zipfile.LargeZipFile)


def read_npz(path: str | os.PathLike[str], what: str, error: type[Exception] = ValueError,
             required: tuple[str, ...] = ("x",)) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickled objects), which must hold ``required``; ``error`` otherwise."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise error(f"{path}: a single .npy array, not the .npz {what} file")
            missing = [name for name in required if name not in data.files]
            if missing:
                raise error(f"{path}: the {what} file lacks the array(s) {', '.join(missing)} "
                            f"(it holds {', '.join(sorted(data.files)) or 'none'})")
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not the .npz {what} file") from None
    except _DAMAGED as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise error(f"{path}: not a readable .npz {what} file ({detail[:200]})") from None
