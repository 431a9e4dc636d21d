"""The bench session record (``results.json``): typed, versioned, validated on read.

``runtime/`` writes one per session; the aggregated ``results.csv``, the plots and the benchmark
scripts that fill ``results/`` read it back through ``load``. Wall-clock latency (physical devices)
and instruction counts (emulation) are separate fields, so an emulated count can never be read as
a time.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field

from bitat_edge import schema
from bitat_edge.manifest import ModelKind

BENCH_SCHEMA = "bitat-edge/bench/2"


class BenchRecordError(schema.SchemaError):
    """A bench session record is missing, unreadable, or has a bad field."""


class Stats(schema.Schema):
    """Latency statistics of one window or of all runs, in ms. Medians and quartiles exist only when
    per-run timings do (an engine that reports window aggregates gives mean/min/max/std)."""

    n: int
    mean: float
    min: float
    max: float
    std: float
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None


class Latency(schema.Schema):
    """Wall-clock latency under the protocol. ``typical_ms`` is the headline figure and ``typical_is``
    says what it is: the median of all runs, or the median of window means (aggregates only)."""

    source: str
    windows: list[Stats]
    overall: Stats
    typical_ms: float
    typical_is: Literal["median", "median of window means"]
    window_spread_ms: float  # max - min over the windows' typical values: drift that pooling hides


class OpCount(schema.Schema):
    """Instructions one op of the model executed in one inference (emulated)."""

    index: int
    op: str
    instructions: int
    binary_macs: int = 0


class Instructions(schema.Schema):
    """EMULATED cost: instructions executed per inference, deterministic; never a time."""

    per_inference: int
    cpu: str  # the emulated core, e.g. cortex-a72
    method: str  # how they were counted, e.g. "qemu TCG plugin, marked region"
    per_op: list[OpCount] = Field(default_factory=list)
    binary_macs_per_instruction: float | None = None  # of the binary-conv kernels


class Accuracy(schema.Schema):
    """Top-1 on the bundle's eval set (or its first ``total`` images)."""

    correct: int
    total: int
    top1: float
    agreement_top1: float | None = None  # with ``agreement_reference`` on the same images
    agreement_reference: str = ""


class Footprint(schema.Schema):
    """Memory of a microcontroller build, in bytes, from its linker map (stack: measured high-water mark)."""

    flash_code: int  # engine, board support, application and C library code and constants
    flash_model: int  # the model blob
    flash_data: int  # initial values of .data
    sram_arena: int  # the tensor arena, planned offline
    sram_stack: int  # the stack used in the run (high-water mark)
    sram_other: int  # .data and .bss
    flash_limit: int  # the board's flash
    sram_limit: int  # the board's SRAM for the arena and other data, plus its stack memory

    @property
    def flash(self) -> int:
        return self.flash_code + self.flash_model + self.flash_data

    @property
    def sram(self) -> int:
        """Peak arena plus stack: what the model needs (issue 10's ``sram_bytes``)."""
        return self.sram_arena + self.sram_stack

    @property
    def sram_total(self) -> int:
        """Everything in SRAM: the model's arena and stack and the program's other data."""
        return self.sram_arena + self.sram_stack + self.sram_other


class LayerTime(schema.Schema):
    """One row of a per-op time profile (physical devices)."""

    name: str
    type: str
    avg_ms: float | None
    percent: float | None = None
    subgraph: int = 0


class Measurement(schema.Schema):
    """One model measured by one engine."""

    model: ModelKind | str  # a bundle kind, or a named extra baseline (e.g. the float model's int8)
    file: str
    model_sha256: str
    model_bytes: int
    engine: str
    engine_version: str
    backend: str
    delegate: str = ""  # what ran the model besides the engine's own kernels ("none", "xnnpack ..."); "" unknown
    latency: Latency | None = None
    instructions: Instructions | None = None
    peak_memory_mb: float | None = None
    peak_memory_source: str = ""
    footprint: Footprint | None = None  # microcontroller builds
    accuracy: Accuracy | None = None
    reference_top1: float | None = None
    matches_reference: bool | None = None
    profile: list[LayerTime] | None = None
    notes: list[str] = Field(default_factory=list)
    predictions: list[int] | None = Field(default=None, exclude=True, repr=False)
    """Top-1 class of each eval image, for agreement between engines. Held in memory only: the session
    writes it beside results.json (``predictions_<model>.npy``), never into it."""


class DeviceInfo(schema.Schema):
    name: str
    description: str
    arch: str
    cpu: str
    transport: str


class Facts(schema.Schema):
    """System facts recorded with every session."""

    machine: str = ""  # uname -m (or the emulated CPU's architecture)
    kernel: str = ""
    cpu: str = ""
    governor: str = ""  # cpufreq governor of cpu0, "" when not exposed
    glibc: str = ""  # "" on Android (bionic), bare metal, or when unknown
    long_bit: int = 0
    os: str = ""


class ProtocolInfo(schema.Schema):
    warmup: int
    runs: int
    windows: int
    threads: int


class Harness(schema.Schema):
    bitat_edge: str
    python: str
    command: list[str]


class BenchSession(schema.Schema):
    """Everything one ``bench.py`` session measured, with what is needed to trust it."""

    schema_id: Literal["bitat-edge/bench/2"] = Field(BENCH_SCHEMA, alias="schema")
    date: str
    device: DeviceInfo
    emulated: bool
    facts: Facts
    protocol: ProtocolInfo
    bundle: str
    model_name: str
    harness: Harness
    measurements: list[Measurement]
    ratios: dict[str, float] = Field(default_factory=dict)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def load(path: str | os.PathLike[str]) -> BenchSession:
    """Read and validate a session's ``results.json``."""
    return schema.load_json(BenchSession, path, "bench session record", BenchRecordError)
