"""The deploy bundle: its manifest (with the ``deploy`` section) and writing it, all or nothing.

``check_outputs`` refuses an output directory that is not a previous bundle (before any work);
``write_bundle`` builds the bundle in a hidden sibling and swaps it in atomically
(``bitat_edge.outdir.replace``): at every instant the output is the complete old bundle or the complete
new one, also under kill -9. A conversion that fails its parity gate writes only its report, into
``BundleDir.rejected``. File names come from ``bitat_edge.layout.BundleDir``.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bitat_edge import manifest as mf
from bitat_edge import outdir
from bitat_edge.atomic import atomic_open, write_bytes, write_json, write_text
from bitat_edge.layout import BundleDir
from convert import report
from convert.blob import CompiledBlob
from convert.engines import ENGINES
from convert.errors import ConvertError

if TYPE_CHECKING:
    from convert.keras_builder import LayerRecord


def deploy_manifest(manifest: mf.Manifest, input_nchw: tuple[int, ...], parity: dict[str, Any],
                    models: dict[mf.ModelKind, bytes], layers: list[LayerRecord],
                    blobs: dict[str, CompiledBlob] | None = None, *, int8_form: mf.IntegerForm) -> mf.Manifest:
    """``manifest`` with the ``deploy`` section the runtime reads (and the built layers when it lists none);
    ``blobs``: the C engine's compiled models by DeploySection field (``blob``, ``mcu_blob``); ``int8_form``:
    the integer form of the ``int8`` model (``convert.pipeline.int8_form``)."""
    _, c, h, w = input_nchw
    engines = parity["engines"]
    deploy = mf.DeploySection(
        input_shape=[1, h, w, c],
        reference_top1={kind: round(engines[name].get("top1", engines[name]["agreement"]), 6)
                        for kind, (name, _) in ENGINES.items()},
        top1_is="accuracy" if parity["labelled"] else "agreement", reference=parity["reference"],
        sha256={kind: hashlib.sha256(flatbuffer).hexdigest() for kind, flatbuffer in models.items()},
        int8_form=int8_form,
        **{field: mf.BlobInfo(format_version=blob.format_version, arena_bytes=blob.arena_bytes,
                              sha256=hashlib.sha256(blob.data).hexdigest()) for field, blob in (blobs or {}).items()})
    specs = manifest.layers or [  # a foreign model's manifest may not list its layers
        mf.LayerSpec(name=r.name, op=r.op, precision=r.precision, reason=r.reason) for r in layers]
    return manifest.model_copy(update={"deploy": deploy, "layers": specs})


def _not_a_rejected_report(path: Path) -> str:
    reports = {BundleDir(path).report_json.name, BundleDir(path).report_md.name}
    foreign = sorted(p.name for p in path.iterdir() if p.name not in reports)
    return f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not part of a kept report" if foreign else ""


def check_outputs(out: Path, inputs: Iterable[Path | None]) -> None:
    """Refuse (``ConvertError``, nothing touched) an ``out`` that is not a previous bundle, or whose
    ``.rejected`` sibling is not a kept report."""
    outdir.check(out, not_ours=lambda p: BundleDir(p).not_a_bundle(), what="deploy bundle", inputs=inputs,
                 error=ConvertError)
    outdir.check(BundleDir(out).rejected, not_ours=_not_a_rejected_report, what="kept report", inputs=inputs,
                 error=ConvertError)


def _cannot_write(out: Path, exc: OSError) -> ConvertError:
    return ConvertError(f"{out}: cannot write the bundle ({exc.strerror or exc}); the previous bundle, if any, "
                        "is unchanged")


def _write_report(files: BundleDir, result: dict[str, Any]) -> None:
    write_json(files.report_json, result)
    write_text(files.report_md, report.render_markdown(result))


def write_bundle(out: Path, manifest: mf.Manifest, models: dict[mf.ModelKind, bytes],
                 eval_arrays: dict[str, np.ndarray], result: dict[str, Any],
                 blobs: dict[str, bytes] | None = None) -> Path:
    """Write the bundle into a hidden sibling of ``out``, then swap it in place of ``out`` atomically."""
    try:
        with outdir.replace(out) as new:
            files = BundleDir(new)
            for kind, flatbuffer in models.items():
                write_bytes(files.model(kind), flatbuffer)
            for field, blob in (blobs or {}).items():  # the BundleDir path of the same name
                write_bytes(getattr(files, field), blob)
            with atomic_open(files.eval, "wb") as handle:
                np.savez(handle, **eval_arrays)
            _write_report(files, result)
            manifest.save(files.manifest)
    except OSError as exc:
        raise _cannot_write(out, exc) from None
    return out


def write_rejected(out: Path, result: dict[str, Any]) -> Path:
    """Keep the report of a conversion that failed its parity gate in ``BundleDir(out).rejected``; return
    the Markdown report's path."""
    rejected = BundleDir(out).rejected
    try:
        with outdir.replace(rejected) as new:
            _write_report(BundleDir(new), result)
    except OSError as exc:
        raise ConvertError(f"{rejected}: cannot keep the report of a conversion that failed its parity gate "
                           f"({exc.strerror or exc})") from None
    return BundleDir(rejected).report_md


def discard_rejected(out: Path) -> None:
    """Remove the kept report of an earlier failed conversion once a bundle is written (only if that is all it holds)."""
    rejected = BundleDir(out).rejected
    if rejected.is_dir() and not rejected.is_symlink() and not _not_a_rejected_report(rejected):
        shutil.rmtree(rejected, ignore_errors=True)
