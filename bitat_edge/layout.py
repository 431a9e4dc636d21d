"""Where every file of a run directory and a deploy bundle lives: spelled here and nowhere else.

```
runs/<name>/config.yaml         resolved train config, written before training
            env.json            versions, machine, seed, git revision, command line
            metrics.csv         one row per epoch
            summary.json        test top-1 of best.pt and run totals (present = the run finished)
            checkpoints/        last.pt, best.pt
            tb/                 TensorBoard events (optional)
            model.onnx          exported eval-mode network (the convert stage's input)
            manifest.json       the contract (bitat_edge.manifest)
            eval.npz            preprocessed test split: x (NCHW float32), y, torch_logits
            calib.npz           calibration images: x (NCHW float32)
            deploy/             the bundle (BundleDir)
            deploy.rejected/    report.json, report.md of a conversion that failed its parity gate
            bench/              bench sessions: <device>-<UTC stamp>/{log.txt, results.json, results.txt},
                                results.csv, plots
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODEL_KINDS = ("lce", "fp32", "int8")
"""The flatbuffers of a bundle: the LCE model and its float32 / int8 TFLite baselines."""


@dataclass(frozen=True)
class BundleDir:
    """Paths inside a deploy bundle (``<run>/deploy``)."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def eval(self) -> Path:
        """Preprocessed eval set: ``x`` float32 NHWC, optional ``y`` int64."""
        return self.root / "eval.npz"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def blob(self) -> Path:
        """The LCE model compiled for the C engine (runtime/native) on application cores, planned for speed;
        present when the engine runs all its ops."""
        return self.root / "model.blob"

    @property
    def mcu_blob(self) -> Path:
        """The same model compiled for microcontrollers: memory fusion shrinks the arena (runtime/mcu)."""
        return self.root / "model_mcu.blob"

    def model(self, kind: str) -> Path:
        """The flatbuffer of ``kind`` (one of ``MODEL_KINDS``)."""
        names = {"lce": "model.tflite", "fp32": "model_fp32.tflite", "int8": "model_int8.tflite"}
        if kind not in names:
            raise ValueError(f"unknown model kind {kind!r}; one of {', '.join(MODEL_KINDS)}")
        return self.root / names[kind]

    @property
    def rejected(self) -> Path:
        """Beside the bundle: the report of a conversion that failed its parity gate (no bundle written)."""
        return self.root.with_name(self.root.name + ".rejected")

    def members(self) -> tuple[Path, ...]:
        """Every file a bundle may hold: each path property of this class inside ``root``, and the flatbuffers."""
        paths = [getattr(self, name) for name, value in vars(type(self)).items() if isinstance(value, property)]
        return (*(p for p in paths if p.parent == self.root), *(self.model(kind) for kind in MODEL_KINDS))

    def is_bundle(self) -> bool:
        """Whether this directory holds a bundle (its manifest and LCE flatbuffer)."""
        return self.manifest.is_file() and self.model("lce").is_file()

    def not_a_bundle(self) -> str:
        """Why this directory may not be replaced by a new bundle ("" when it is a bundle and holds nothing else)."""
        if not self.is_bundle():
            return f"no {self.manifest.name} and {self.model('lce').name}"
        members = {p.name for p in self.members()}
        foreign = sorted(p.name for p in self.root.iterdir() if p.name not in members)
        return f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not part of a bundle" if foreign else ""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (see the module docstring)."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> RunDir:
        return cls(Path(path))

    def not_a_run(self) -> str:
        """Why this directory is not a run directory ("" when it is: training wrote its config and env.json)."""
        return "" if self.config.is_file() and self.env.is_file() else f"no {self.config.name} and {self.env.name}"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def onnx(self) -> Path:
        return self.root / "model.onnx"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def eval(self) -> Path:
        """Preprocessed test split: ``x`` float32 NCHW, ``y`` int64, ``torch_logits`` float32."""
        return self.root / "eval.npz"

    @property
    def calib(self) -> Path:
        """Calibration images for int8: ``x`` float32 NCHW."""
        return self.root / "calib.npz"

    @property
    def exported(self) -> tuple[Path, ...]:
        """What the export step writes: the convert stage's inputs."""
        return (self.onnx, self.manifest, self.eval, self.calib)

    @property
    def deploy(self) -> BundleDir:
        return BundleDir(self.root / "deploy")

    @property
    def bench(self) -> Path:
        return self.root / "bench"
