"""The deploy bundle: its manifest (with the ``deploy`` section) and writing it, all or nothing.

The bundle is built in a temporary sibling directory and renamed into place only when every file
is written, so a failed write leaves the previous bundle (or nothing) behind. File names come from
``bitat_edge.layout.BundleDir``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bitat_edge import manifest as mf
from bitat_edge.atomic import write_bytes, write_json, write_text
from bitat_edge.layout import BundleDir
from convert import report
from convert.blob import CompiledBlob
from convert.engines import ENGINES
from convert.errors import ConvertError
from convert.keras_builder import LayerRecord


def deploy_manifest(manifest: mf.Manifest, input_nchw: tuple[int, ...], parity: dict[str, Any],
                    models: dict[mf.ModelKind, bytes], layers: list[LayerRecord],
                    blob: CompiledBlob | None = None) -> mf.Manifest:
    """``manifest`` with the ``deploy`` section the runtime reads (and the built layers when it lists none)."""
    _, c, h, w = input_nchw
    engines = parity["engines"]
    deploy = mf.DeploySection(
        input_shape=[1, h, w, c],
        reference_top1={kind: round(engines[name].get("top1", engines[name]["agreement"]), 6)
                        for kind, (name, _) in ENGINES.items()},
        top1_is="accuracy" if parity["labelled"] else "agreement", reference=parity["reference"],
        sha256={kind: hashlib.sha256(flatbuffer).hexdigest() for kind, flatbuffer in models.items()},
        blob=None if blob is None else mf.BlobInfo(format_version=blob.format_version, arena_bytes=blob.arena_bytes,
                                                   sha256=hashlib.sha256(blob.data).hexdigest()))
    specs = manifest.layers or [  # a foreign model's manifest may not list its layers
        mf.LayerSpec(name=r.name, op=r.op, precision=r.precision, reason=r.reason) for r in layers]
    return manifest.model_copy(update={"deploy": deploy, "layers": specs})


def _replace_dir(tmp: Path, out: Path) -> None:
    backup = None
    if out.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, backup / out.name)
    os.rename(tmp, out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _cannot_write(out: Path, exc: OSError) -> ConvertError:
    return ConvertError(f"{out}: cannot write the bundle ({exc.strerror or exc}); the previous bundle, if any, "
                        "is unchanged")


def write_bundle(out: Path, manifest: mf.Manifest, models: dict[mf.ModelKind, bytes],
                 eval_arrays: dict[str, np.ndarray], result: dict[str, Any], blob: bytes | None = None) -> Path:
    """Write the bundle into a temporary sibling of ``out``, then swap it in place of ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise _cannot_write(out, exc) from None
    try:
        tmp.chmod(0o755)  # mkdtemp makes a private 0700 directory; the bundle is an ordinary one
        files = BundleDir(tmp)
        for kind, flatbuffer in models.items():
            write_bytes(files.model(kind), flatbuffer)
        if blob is not None:
            write_bytes(files.blob, blob)
        with open(files.eval, "wb") as handle:
            np.savez(handle, **eval_arrays)
        write_json(files.report_json, result)
        write_text(files.report_md, report.render_markdown(result))
        manifest.save(files.manifest)
        _replace_dir(tmp, out)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        if isinstance(exc, OSError):
            raise _cannot_write(out, exc) from exc
        raise
    return out
