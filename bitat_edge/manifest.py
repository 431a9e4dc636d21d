"""The manifest: one versioned schema that every stage reads and writes.

``train/`` writes it next to ``model.onnx``; ``convert/`` reads it (or one written by hand for a
foreign ONNX model), adds the ``deploy`` section and writes it into the bundle; ``runtime/`` reads
the bundle's copy. Reading validates every field and names the file and the field on error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bitat_edge.atomic import write_json

SCHEMA_VERSION = 1
PRECISIONS = ("float", "w1a1", "w1a32", "int8", "w2a2", "w4a4", "w8a8")
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "int8", "uint8")
LAYER_OPS = ("conv", "depthwise_conv", "linear")


class ManifestError(ValueError):
    """A manifest is missing, unreadable, or has a bad field."""


@dataclass
class InputSpec:
    """The model input: shape in ``layout`` order (batch first), and the normalization applied to pixels in [0, 1]."""

    shape: list[int]
    layout: str = "NCHW"
    dtype: str = "float32"
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass
class LayerSpec:
    """One weight layer as trained: its precision and, when not binary, why."""

    name: str
    op: str  # conv | depthwise_conv | linear
    precision: str  # one of PRECISIONS
    in_channels: int = 0
    out_channels: int = 0
    kernel: list[int] = field(default_factory=list)
    stride: list[int] = field(default_factory=list)
    groups: int = 1
    reason: str = ""


@dataclass
class Manifest:
    """Everything a later stage needs to know about a model without importing the stage that made it."""

    model_name: str
    input: InputSpec
    classes: list[str]
    arch: str = ""
    method: str = "float"
    dataset: str = ""
    layers: list[LayerSpec] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)
    producer: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Validate, then write atomically."""
        validate(self.to_dict(), str(path))
        return write_json(path, self.to_dict())


def _fail(source: str, where: str, what: str) -> None:
    raise ManifestError(f"{source}: field '{where}' {what}")


def _check_type(source: str, where: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        _fail(source, where, f"must be {kind}, got a boolean")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        _fail(source, where, f"must be of type {names}, got {type(value).__name__} ({value!r})")


def _known(source: str, where: str, data: dict[str, Any], cls: type) -> None:
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - valid)
    if unknown:
        _fail(source, f"{where}{unknown[0]}", f"is unknown (valid fields: {', '.join(sorted(valid))})")


def validate(data: Any, source: str = "<manifest>") -> Manifest:
    """Check a decoded manifest dict field by field and return the typed ``Manifest``."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: a manifest must be a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", None)
    if version != SCHEMA_VERSION:
        _fail(source, "schema_version", f"is {version!r}; this version of bitat-edge reads schema {SCHEMA_VERSION}")
    _known(source, "", data, Manifest)
    for required in ("model_name", "input", "classes"):
        if required not in data:
            _fail(source, required, "is missing")
    _check_type(source, "model_name", data["model_name"], str)
    inp = data["input"]
    _check_type(source, "input", inp, dict)
    _known(source, "input.", inp, InputSpec)
    if "shape" not in inp:
        _fail(source, "input.shape", "is missing")
    shape = inp["shape"]
    _check_type(source, "input.shape", shape, list)
    if len(shape) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        _fail(source, "input.shape", f"must be four positive integers (batch first), got {shape!r}")
    if inp.get("dtype", "float32") not in DTYPES:
        _fail(source, "input.dtype", f"must be one of {DTYPES}, got {inp.get('dtype')!r}")
    layout = inp.get("layout", "NCHW")
    if layout not in LAYOUTS:
        _fail(source, "input.layout", f"must be one of {LAYOUTS}, got {layout!r}")
    channels = shape[1] if layout == "NCHW" else shape[3]
    for key in ("mean", "std"):
        values = inp.get(key, [])
        _check_type(source, f"input.{key}", values, list)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if values and (len(values) != channels or not numbers):
            _fail(source, f"input.{key}", f"must list {channels} numbers (one per channel), got {values!r}")
    if any(s == 0 for s in inp.get("std", [])):
        _fail(source, "input.std", "must not contain 0")
    classes = data["classes"]
    _check_type(source, "classes", classes, list)
    if not classes or not all(isinstance(c, str) for c in classes):
        _fail(source, "classes", "must be a non-empty list of class names")
    for key in ("arch", "method", "dataset", "producer", "created"):
        _check_type(source, key, data.get(key, ""), str)
    for key in ("files", "metrics", "deploy"):
        _check_type(source, key, data.get(key, {}), dict)
    for name, value in data.get("metrics", {}).items():
        _check_type(source, f"metrics.{name}", value, (int, float))
    layers = data.get("layers", [])
    _check_type(source, "layers", layers, list)
    parsed_layers = []
    for i, layer in enumerate(layers):
        where = f"layers[{i}]"
        _check_type(source, where, layer, dict)
        _known(source, f"{where}.", layer, LayerSpec)
        for required in ("name", "op", "precision"):
            if required not in layer:
                _fail(source, f"{where}.{required}", "is missing")
        if layer["precision"] not in PRECISIONS:
            _fail(source, f"{where}.precision", f"must be one of {PRECISIONS}, got {layer['precision']!r}")
        if layer["op"] not in LAYER_OPS:
            _fail(source, f"{where}.op", f"must be one of {LAYER_OPS}, got {layer['op']!r}")
        for key in ("name", "reason"):
            _check_type(source, f"{where}.{key}", layer.get(key, ""), str)
        for key in ("in_channels", "out_channels", "groups"):
            _check_type(source, f"{where}.{key}", layer.get(key, 0), int)
        for key in ("kernel", "stride"):
            values = layer.get(key, [])
            if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                _fail(source, f"{where}.{key}", f"must be a list of integers, got {values!r}")
        parsed_layers.append(LayerSpec(**layer))
    body = {k: v for k, v in data.items() if k not in ("input", "layers")}
    return Manifest(input=InputSpec(**inp), layers=parsed_layers, **body)


def load(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{source}: manifest not found") from None
    except OSError as exc:
        raise ManifestError(f"{source}: cannot read manifest ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return validate(data, source)
