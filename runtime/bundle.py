"""The deploy bundle written by ``convert/``: validated on load, every problem one clear sentence.

File names come from ``bitat_edge.layout.BundleDir``; the manifest (``bitat_edge.manifest``) carries
the deployed input shape and the convert stage's top-1 figures in its ``deploy`` section.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bitat_edge.arrays import read_npz
from bitat_edge.layout import MODEL_KINDS, BundleDir
from bitat_edge.manifest import IntegerForm, Manifest, ManifestError, load
from runtime.errors import BenchError
from runtime.tflite_ops import operator_counts


@dataclass
class ModelFile:
    """One flatbuffer of the bundle."""

    kind: str
    path: Path
    sha256: str
    size_bytes: int


@dataclass
class Bundle:
    """A loaded, checked deploy bundle."""

    root: Path  # the deploy directory
    run_dir: Path  # its parent run directory (bench results go to <run_dir>/bench)
    manifest: Manifest
    models: dict[str, ModelFile] = field(default_factory=dict)
    eval_path: Path | None = None

    def reference_top1(self, kind: str) -> float | None:
        """The convert stage's top-1 accuracy for ``kind`` (``manifest.deploy.reference_top1``), or None when
        absent or when it is an agreement rate, not accuracy."""
        deploy = self.manifest.deploy
        if deploy is None or deploy.top1_is != "accuracy":
            return None
        return deploy.reference_top1.get(kind)

    @property
    def int8_form(self) -> IntegerForm:
        """The integer form the ``int8`` model holds (``manifest.deploy.int8_form``; "int8" in bundles written
        before the field existed)."""
        return self.manifest.deploy.int8_form if self.manifest.deploy is not None else "int8"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_deploy_dir(path: str | Path) -> Path:
    """Accept a deploy directory or a run directory that contains ``deploy/``."""
    root = Path(path).expanduser()
    if (root / "deploy" / "manifest.json").is_file():
        return root / "deploy"
    if (root / "manifest.json").is_file():
        return root
    if not root.exists():
        raise BenchError(
            f"bundle {root}: no such directory; run `make train && make convert` first or pass "
            "--bundle <run>/deploy"
        )
    raise BenchError(f"bundle {root}: no manifest.json here or in {root / 'deploy'}; pass a deploy directory")


def load_bundle(path: str | Path, kinds: tuple[str, ...] = MODEL_KINDS) -> Bundle:
    """Load and check the bundle at ``path`` for the model kinds asked for."""
    root = resolve_deploy_dir(path)
    try:
        manifest = load(root / "manifest.json")
    except ManifestError as exc:
        raise BenchError(f"bundle {root}: bad manifest ({exc}); re-run the convert stage") from None
    deploy = manifest.deploy
    if deploy is None:
        raise BenchError(f"{root / 'manifest.json'}: field 'deploy' is missing; this is a run's manifest, not a "
                         "bundle's: run the convert stage and pass its deploy directory")
    bundle = Bundle(root=root, run_dir=root.parent, manifest=manifest)
    for kind in kinds:
        model_path = BundleDir(root).model(kind)
        name = model_path.name
        if not model_path.is_file():
            form = f" ({deploy.int8_form} form)" if kind == "int8" and deploy.int8_form != "int8" else ""
            raise BenchError(
                f"bundle {root}: the {kind} model{form} {name} is missing; re-run the convert stage "
                f"or measure the others with --model"
            )
        operator_counts(model_path)  # structure and bounds check: catches truncated or foreign files
        bundle.models[kind] = ModelFile(kind, model_path, sha256_file(model_path), model_path.stat().st_size)
    eval_path = BundleDir(root).eval
    bundle.eval_path = None
    if eval_path.is_file():
        x, _ = load_eval(eval_path)
        shape = deploy.input_shape
        if list(x.shape[1:]) != list(shape[1:]):
            raise BenchError(f"{eval_path}: images are {list(x.shape[1:])} but the model takes {list(shape[1:])} "
                             "(deploy.input_shape); re-run the convert stage")
        bundle.eval_path = eval_path
    return bundle


def load_eval(path: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``x`` (float32, N×H×W×C) and, when present, ``y`` (int, N) from ``eval.npz``; the first ``limit``."""
    data = read_npz(path, "eval", BenchError)
    x, y = data["x"], data.get("y")
    if x.ndim != 4 or (y is not None and (y.ndim != 1 or len(x) != len(y))):
        raise BenchError(f"{path}: 'x' must be N×H×W×C and 'y' length N, got {x.shape} and "
                         f"{None if y is None else y.shape}")
    if limit is not None:
        x, y = x[:limit], (None if y is None else y[:limit])
    return x.astype(np.float32, copy=False), (None if y is None else y.astype(np.int64, copy=False))
