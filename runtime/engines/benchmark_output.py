"""Parse what ``lce_benchmark_model`` (TFLite's ``benchmark_model`` with LCE ops) prints.

Feed it stdout and stderr merged: recent TFLite logs INFO/WARN to stdout and ERROR to stderr, older
builds everything to stderr. Line formats follow TensorFlow's sources (see
``tests/runtime/fixtures/README.md``): ``BenchmarkModel::Run`` (``count=`` stat lines, one for the
warm-up and one for the timed runs), ``BenchmarkLoggingListener::OnBenchmarkEnd`` (the
"Inference timings in us" and memory lines), ``Stat::OutputToStream`` (``count=0``,
``count=N curr=C(all same)``, numbers printed with 6 significant digits so >= 1 s appears as
``1.23457e+06``) and the op-profiling tables of ``StatsCalculator`` (with or without the
``[start]`` column, which newer versions dropped).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bitat_edge.bench_record import LayerTime

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_PREFIX = re.compile(r"^(INFO|WARN|WARNING|ERROR|VERBOSE):\s?")
_PAIR = re.compile(rf"(\w+)=({NUM})")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: ({NUM}), First inference: ({NUM}), "
    rf"Warmup \(avg\): ({NUM}), Inference \(avg\): ({NUM})"
)
_TIMINGS_OLD = re.compile(
    rf"Average inference timings in us: Warmup: ({NUM}), Init: ({NUM}), (?:Inference|no stats): ({NUM})"
)
_MEM_DELTA = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init=({NUM}) overall=({NUM})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUM})")
_VMRSS = re.compile(r"- VmRSS\s*:\s*(\d+) MB")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({NUM})")
_INIT = re.compile(rf"Initialized session in ({NUM}) ?ms")
_TABLE = re.compile(r"^=+ (.+?) =+$")
_SECTIONS = {
    "Profiling Info for Benchmark Initialization:": "init",
    "Operator-wise Profiling Info for Regular Benchmark Runs:": "run",
}
_TABLE_KEYS = {
    "Run Order": "run_order",
    "Top by Computation Time": "top_by_time",
    "Top by Memory Use": "top_by_memory",
    "Summary by node type": "by_node_type",
}


def _num(text: str) -> float:
    return float(text)


@dataclass
class RunStat:
    """One ``count=...`` line (µs)."""

    count: int
    first: float = math.nan
    curr: float = math.nan
    min: float = math.nan
    max: float = math.nan
    avg: float = math.nan
    std: float = math.nan
    all_same: bool = False

    def as_window(self) -> dict[str, float]:
        """count/avg/min/max/std, filling the '(all same)' and single-run forms from ``curr``."""
        if self.count and math.isnan(self.avg):
            return {"count": self.count, "avg": self.curr, "min": self.curr, "max": self.curr, "std": 0.0}
        return {"count": self.count, "avg": self.avg, "min": self.min, "max": self.max, "std": self.std}


@dataclass
class BenchmarkOutput:
    """Everything recognised in one run's output; fields stay None when their line was absent."""

    stats: list[RunStat] = field(default_factory=list)  # in order: warm-up, then timed runs
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    model_size_mb: float | None = None
    init_ms: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    vmrss_mb: float | None = None
    profiles: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # section -> table -> rows
    errors: list[str] = field(default_factory=list)
    failed: bool = False

    @property
    def warmup(self) -> RunStat | None:
        return self.stats[0] if len(self.stats) >= 2 else None

    @property
    def inference(self) -> RunStat | None:
        return self.stats[-1] if self.stats else None


def _parse_stat(text: str) -> RunStat:
    values = {k: v for k, v in _PAIR.findall(text)}
    stat = RunStat(count=int(float(values.get("count", 0))), all_same="(all same)" in text)
    for key in ("first", "curr", "min", "max", "avg", "std"):
        if key in values:
            setattr(stat, key, _num(values[key]))
    return stat


def _cell(value: str) -> Any:
    text = value.strip()
    if text.endswith("%"):
        text = text[:-1]
    try:
        return float(text)
    except ValueError:
        return value.strip()


def parse(text: str) -> BenchmarkOutput:
    """Parse merged stdout+stderr of one benchmark run."""
    result = BenchmarkOutput()
    section = "run"
    subgraph = 0
    table: str | None = None
    columns: list[str] = []
    for raw in text.splitlines():
        prefix = _PREFIX.match(raw)
        line = raw[prefix.end():] if prefix else raw
        stripped = line.strip()
        if prefix and prefix.group(1) == "ERROR":
            result.errors.append(stripped)
            if "Benchmarking failed" in stripped:
                result.failed = True
        if table is not None:
            if not stripped:
                table = None
                continue
            if not columns:
                columns = [c.strip() for c in re.findall(r"\[([^\]]+)\]", line)]
                continue
            cells = [c for c in line.split("\t")]
            if cells and cells[0].strip() == "":
                cells = cells[1:]
            if len(cells) < len(columns):
                table = None  # not a table row: the table ended without a blank line
            else:
                cells = cells[: len(columns) - 1] + ["\t".join(cells[len(columns) - 1 :])]
                row = {col: _cell(val) for col, val in zip(columns, cells, strict=True)}
                row["subgraph"] = subgraph
                result.profiles.setdefault(section, {}).setdefault(table, []).append(row)
                continue
        if stripped in _SECTIONS:
            section, subgraph = _SECTIONS[stripped], 0
            continue
        graph = re.match(r"(?:Primary graph|Subgraph \(index: (\d+)\)) (?:profile|summary):$", stripped)
        if graph:
            subgraph = int(graph.group(1) or 0)
            continue
        heading = _TABLE.match(stripped)
        if heading and heading.group(1) in _TABLE_KEYS:
            table, columns = _TABLE_KEYS[heading.group(1)], []
            continue
        if stripped.startswith("count="):
            result.stats.append(_parse_stat(stripped))
            continue
        match = _TIMINGS.search(stripped)
        if match:
            result.init_us, result.first_inference_us, result.warmup_avg_us, result.inference_avg_us = map(
                _num, match.groups()
            )
            continue
        match = _TIMINGS_OLD.search(stripped)
        if match:
            result.warmup_avg_us, result.init_us, result.inference_avg_us = map(_num, match.groups())
            continue
        for pattern, names in (
            (_MEM_DELTA, ("memory_init_mb", "memory_overall_mb")),
            (_PEAK, ("peak_memory_mb",)),
            (_VMRSS, ("vmrss_mb",)),
            (_MODEL_SIZE, ("model_size_mb",)),
            (_INIT, ("init_ms",)),
        ):
            match = pattern.search(stripped)
            if match:
                for name, value in zip(names, match.groups(), strict=True):
                    setattr(result, name, _num(value))
                break
    return result


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def per_layer(output: BenchmarkOutput) -> list[LayerTime]:
    """The regular-run 'Run Order' table as one ``LayerTime`` per op, in execution order."""
    rows = output.profiles.get("run", {}).get("run_order", [])
    return [
        LayerTime(name=str(r.get("Name", "")), type=str(r.get("node type", "")), avg_ms=_number(r.get("avg ms")),
                  percent=_number(r.get("%")), subgraph=r["subgraph"])
        for r in rows
    ]
