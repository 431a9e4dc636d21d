"""The manifest: one versioned, typed record that every stage reads and writes.

``train/`` writes it next to ``model.onnx`` (or a user writes one by hand for a foreign ONNX model);
``convert/`` reads it, adds the ``deploy`` section and writes it into the bundle; ``runtime/`` reads
the bundle's copy. Reading validates every field (``bitat_edge.schema``) and names the file and the
field on error. File names are not part of it: ``bitat_edge.layout`` fixes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from bitat_edge import schema
from bitat_edge.layout import MODEL_KINDS
from bitat_edge.precision import PrecisionField

SCHEMA_VERSION = 2
ModelKind = Literal["lce", "fp32", "int8"]
assert set(ModelKind.__args__) == set(MODEL_KINDS)  # noqa: S101 - one list of kinds
IntegerForm = Literal["int8", "int16x8"]
"""Which integer model the bundle's ``int8`` kind (``model_int8.tflite``) holds; the convert pipeline decides."""
INTEGER_FORMS: dict[IntegerForm, str] = {
    "int8": "every tensor int8",
    "int16x8": "int8 weights, int16 activations into and out of the grid convs, the ops between them float",
}
"""What each integer form is, in the words reports show to users."""
assert set(INTEGER_FORMS) == set(IntegerForm.__args__)  # noqa: S101 - one list of forms


class ManifestError(schema.SchemaError):
    """A manifest is missing, unreadable, or has a bad field."""


class InputSpec(schema.Schema):
    """The model input: shape in ``layout`` order (batch first), and the normalization applied to pixels in [0, 1]."""

    shape: list[int]
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    dtype: Literal["float32", "int8", "uint8"] = "float32"
    mean: list[float] = Field(default_factory=list)
    std: list[float] = Field(default_factory=list)

    @field_validator("shape")
    @classmethod
    def _four_positive(cls, shape: list[int]) -> list[int]:
        if len(shape) != 4 or min(shape) <= 0:
            raise ValueError("must be four positive integers (batch first)")
        return shape

    @field_validator("mean", "std")
    @classmethod
    def _per_channel(cls, values: list[float], info: ValidationInfo) -> list[float]:
        shape, layout = info.data.get("shape"), info.data.get("layout")
        if shape is None or layout is None:  # reported on their own fields
            return values
        channels = shape[1] if layout == "NCHW" else shape[3]
        if values and len(values) != channels:
            raise ValueError(f"must list {channels} numbers (one per channel), got {values}")
        if info.field_name == "std" and 0 in values:
            raise ValueError("must not contain 0")
        return values

    @property
    def channels(self) -> int:
        return self.shape[1] if self.layout == "NCHW" else self.shape[3]


class LayerSpec(schema.Schema):
    """One weight layer as trained: its precision and, when it is float, why."""

    name: str
    op: Literal["conv", "depthwise_conv", "linear"]
    precision: PrecisionField
    in_channels: int = 0
    out_channels: int = 0
    kernel: list[int] = Field(default_factory=list)
    stride: list[int] = Field(default_factory=list)
    groups: int = 1
    reason: str = ""


class BlobInfo(schema.Schema):
    """A compiled LCE model of the C engine in the bundle (``model.blob``, ``model_mcu.blob``; convert/blob.py)."""

    format_version: int = Field(ge=1)
    arena_bytes: int = Field(ge=0)  # the one buffer the engine needs besides the blob
    sha256: str


class DeploySection(schema.Schema):
    """What the convert stage adds for the runtime: the deployed input and its own reference figures.

    ``reference_top1`` holds, per model kind, the top-1 accuracy on the bundle's eval set (or, when
    the eval set has no labels, ``top1_is == "agreement"``: the agreement with ``reference``).
    ``sha256`` fingerprints each flatbuffer so results can name exactly what ran; ``blob`` and
    ``mcu_blob`` describe the C engine's compiled models (application cores; microcontrollers) when the
    bundle has them. ``int8_form`` says which integer form the ``int8`` model holds (``INTEGER_FORMS``):
    ``int8``, every tensor int8 (post-training calibration, or quantization-aware for a graph with integer
    grids; bundles written before the field existed); ``int16x8``, int8 weights, int16 activations into and
    out of the grid convs, the ops between them float (graphs with integer grids).
    """

    input_shape: list[int]  # NHWC, batch 1
    input_layout: Literal["NHWC"] = "NHWC"
    reference_top1: dict[ModelKind, float] = Field(default_factory=dict)
    top1_is: Literal["accuracy", "agreement"] = "accuracy"
    reference: str = ""
    sha256: dict[ModelKind, str] = Field(default_factory=dict)
    int8_form: IntegerForm = "int8"
    blob: BlobInfo | None = None  # None: the LCE model has an op the C engine does not run
    mcu_blob: BlobInfo | None = None

    @field_validator("input_shape")
    @classmethod
    def _batch_one_nhwc(cls, shape: list[int]) -> list[int]:
        if len(shape) != 4 or shape[0] != 1 or min(shape) <= 0:
            raise ValueError("must be [1, H, W, C] with positive sizes")
        return shape


class Manifest(schema.Schema):
    """Everything a later stage needs to know about a model without importing the stage that made it."""

    schema_version: Literal[2]
    model_name: str
    input: InputSpec
    classes: list[str]
    arch: str = ""
    method: str = "float"
    dataset: str = ""
    layers: list[LayerSpec] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    deploy: DeploySection | None = None
    producer: str = ""
    created: str = ""

    def __init__(self, **data: object) -> None:
        data.setdefault("schema_version", SCHEMA_VERSION)
        super().__init__(**data)

    @field_validator("classes")
    @classmethod
    def _named(cls, classes: list[str]) -> list[str]:
        if not classes:
            raise ValueError("must be a non-empty list of class names")
        return classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Validate the whole record, then write it atomically."""
        try:
            return schema.save_json(self, path)
        except schema.SchemaError as exc:
            raise ManifestError(str(exc)) from None


def validate(data: object, source: str = "<manifest>") -> Manifest:
    """Check decoded manifest data field by field and return the typed ``Manifest``."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: a manifest must be a JSON object, got {type(data).__name__}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{source}: field 'schema_version' is {data.get('schema_version')!r}; this version "
                            f"of bitat-edge reads schema {SCHEMA_VERSION} (re-export the run)")
    return schema.parse(Manifest, data, source, ManifestError)


def load(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest file."""
    return validate(schema.read_json(path, "manifest", ManifestError), str(path))
