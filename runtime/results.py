"""Session results: ``log.txt``, ``results.json`` (``bitat_edge.bench_record.BenchSession``), ``results.txt``
and ``predictions_<model>.npy`` (top-1 class per eval image, int16) per session; ``results.csv`` and
``results.md`` aggregated over sessions. Every file is written atomically.

A latency figure is always printed with what it is (``typical_is``): the median of all runs, or the
median of window means when the engine reports window aggregates only.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bitat_edge import bench_record, schema
from bitat_edge.atomic import write_bytes, write_text
from bitat_edge.bench_record import BenchSession
from runtime.errors import BenchError

CSV_COLUMNS = [
    "date", "device", "emulated", "transport", "engine", "backend", "delegate", "model", "threads", "warmup", "runs",
    "windows", "latency_typical_ms", "latency_typical_is", "latency_median_ms", "latency_iqr_ms", "latency_min_ms",
    "latency_max_ms", "latency_std_ms", "instructions_per_inference", "peak_memory_mb", "top1", "eval_samples",
    "model_sha256", "session",
]
"""``latency_median_ms`` holds true medians only (empty for window aggregates); ``latency_typical_ms`` is
the headline figure and ``latency_typical_is`` says which statistic it is."""


AGGREGATES = ("results.csv", "results.md", "accuracy_vs_latency.png", "accuracy_vs_instructions.png")
"""What a session rewrites in the results root (the sessions themselves go to new subdirectories)."""
_CSV_KEYS = {"date", "device", "model", "session"}
_MD_TITLE = "# Benchmark results"


def check_results_root(root: Path) -> None:
    """Refuse (``BenchError``, before measuring) a results root that is a file, or whose aggregated files
    were not written by the harness: a session rewrites them and would lose what they hold."""
    if root.exists() and not root.is_dir():
        raise BenchError(f"{root}: is a file, not a directory; pass a directory for the bench results (--out)")
    csv_path, md_path, *plot_paths = (root / name for name in AGGREGATES)
    ours = {
        csv_path: csv_path.is_file() and _CSV_KEYS <= set(_first_line(csv_path).split(",")),
        md_path: md_path.is_file() and _first_line(md_path) == _MD_TITLE,
        **dict.fromkeys(plot_paths, csv_path.is_file()),  # drawn from results.csv
    }
    for path, own in ours.items():
        if (path.exists() or path.is_symlink()) and not own:
            raise BenchError(f"{path}: was not written by a bench session, and a session would overwrite it; "
                             "pass another results directory (--out) or move the file")


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def session_dir_for(root: Path, device: str, now: datetime) -> Path:
    """A new directory name for a session: ``<device>-<UTC stamp>``, with ``-2``, ``-3``... when taken."""
    base = root / f"{device}-{utc_stamp(now)}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def utc_stamp(now: datetime | None = None) -> str:
    """20260123T101500Z: sortable and safe in file names."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


class SessionLog:
    """Collects log lines (echoed through ``echo``) and writes them to ``log.txt`` at the end."""

    def __init__(self, echo=None) -> None:
        self.lines: list[str] = []
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"{datetime.now(timezone.utc).strftime('%H:%M:%S')} {message}"
        self.lines.append(line)
        if self.echo is not None:
            self.echo(message)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def csv_rows(session: BenchSession, session_dir: str) -> list[dict[str, Any]]:
    """One CSV row per measured model."""
    rows = []
    p = session.protocol
    for m in session.measurements:
        lat, count = m.latency, m.instructions
        overall = lat.overall if lat is not None else None
        rows.append({
            "date": session.date, "device": session.device.name, "emulated": session.emulated,
            "transport": session.device.transport, "engine": m.engine, "backend": m.backend, "delegate": m.delegate,
            "model": m.model,
            "threads": p.threads, "warmup": p.warmup, "runs": p.runs, "windows": p.windows,
            "latency_typical_ms": lat and lat.typical_ms, "latency_typical_is": lat and lat.typical_is,
            "latency_median_ms": overall and overall.median, "latency_iqr_ms": overall and overall.iqr,
            "latency_min_ms": overall and overall.min, "latency_max_ms": overall and overall.max,
            "latency_std_ms": overall and overall.std, "instructions_per_inference": count and count.per_inference,
            "peak_memory_mb": m.peak_memory_mb, "top1": m.accuracy and m.accuracy.top1,
            "eval_samples": m.accuracy and m.accuracy.total, "model_sha256": m.model_sha256, "session": session_dir,
        })
    return rows


def results_text(session: BenchSession) -> str:
    """The human-readable ``results.txt``."""
    emulated = session.emulated
    facts, dev, p = session.facts, session.device, session.protocol
    out = io.StringIO()
    if emulated:
        out.write("*** EMULATED: numbers come from QEMU emulation; they are not device latencies ***\n\n")
    out.write(f"device     {dev.name} ({dev.description})\n")
    out.write(f"transport  {dev.transport}{'  [EMULATED]' if emulated else ''}\n")
    out.write(f"system     {facts.machine} | {facts.cpu} | kernel {facts.kernel} | glibc {facts.glibc or '-'} | "
              f"governor {facts.governor or '-'} | {facts.long_bit}-bit | {facts.os}\n")
    out.write(f"protocol   threads={p.threads} warmup={p.warmup} runs={p.runs} windows={p.windows}\n")
    out.write(f"bundle     {session.bundle}\n")
    out.write(f"date       {session.date}\n\n")
    header = f"{'model':6} {'engine':20} {'typical ms':>10} {'typical is':22} {'IQR ms':>8} {'min ms':>8} " \
             f"{'max ms':>8} {'std ms':>8} {'peak MB':>8} {'top-1':>8}  sha256"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for m in session.measurements:
        lat = m.latency
        o = lat.overall if lat is not None else None
        out.write(
            f"{m.model:6} {m.engine:20} {_fmt(lat and lat.typical_ms):>10} {lat.typical_is if lat else '-':22} "
            f"{_fmt(o and o.iqr):>8} {_fmt(o and o.min):>8} {_fmt(o and o.max):>8} {_fmt(o and o.std):>8} "
            f"{_fmt(m.peak_memory_mb, 1):>8} {_fmt(m.accuracy and m.accuracy.top1, 4):>8}  {m.model_sha256[:12]}\n"
        )
    if session.ratios:
        out.write("\nlatency ratios (typical): " + ", ".join(f"{k} = {v:.2f}x" for k, v in session.ratios.items()) + "\n")
    for m in session.measurements:
        if m.instructions is not None:
            count = m.instructions
            out.write(f"{m.model}: {count.per_inference} instructions per inference on {count.cpu} "
                      f"(EMULATED; {count.method})\n")
            if count.binary_macs_per_instruction is not None:
                out.write(f"{m.model}: binary convolutions {count.binary_macs_per_instruction:.2f} binary MACs per "
                          "instruction\n")
        if m.footprint is not None:
            fp = m.footprint
            out.write(f"{m.model}: flash {fp.flash:,} of {fp.flash_limit:,} bytes (code {fp.flash_code:,}, model "
                      f"{fp.flash_model:,}, data {fp.flash_data:,}); SRAM {fp.sram_total:,} of {fp.sram_limit:,} bytes "
                      f"(arena {fp.sram_arena:,}, stack used {fp.sram_stack:,}, other {fp.sram_other:,})\n")
        if m.reference_top1 is not None and m.accuracy is not None:
            verdict = "matches" if m.matches_reference else "DIFFERS FROM"
            out.write(f"{m.model}: top-1 {m.accuracy.top1:.4f} {verdict} the convert stage's {m.reference_top1:.4f}\n")
        if m.delegate:
            out.write(f"{m.model}: {m.engine} ran with delegate: {m.delegate}\n")
        for note in m.notes:
            out.write(f"note ({m.model}, {m.engine}): {note}\n")
    if emulated:
        out.write("\n*** EMULATED ***\n")
    return out.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def append_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Add ``rows`` to the aggregated CSV (read, append, atomic rewrite in the current columns)."""
    existing = read_csv(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in existing + rows:
        writer.writerow(row)
    return write_text(path, buffer.getvalue())


def _cell(row: dict[str, str], key: str, digits: int) -> str:
    return f"{float(row[key]):.{digits}f}" if row.get(key) not in (None, "") else "-"


def markdown_table(rows: list[dict[str, str]]) -> str:
    """Markdown from CSV rows: physical and emulated measurements in separate tables."""
    out = [_MD_TITLE, "", "Generated from results.csv; every number comes from a results.json.", ""]
    for emulated, title in (("False", "Physical devices and host"), ("True", "Emulated (QEMU) — not device latency")):
        group = [r for r in rows if str(r["emulated"]) == emulated]
        if not group:
            continue
        out += [f"## {title}", "",
                "| date | device | engine | model | threads | typical ms | typical is | IQR ms | peak MB | top-1 |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            out.append(f"| {r['date']} | {r['device']} | {r['engine']} | {r['model']} | {r['threads']} | "
                       f"{_cell(r, typical_column(r), 3)} | {typical_label(r)} | {_cell(r, 'latency_iqr_ms', 3)} | "
                       f"{_cell(r, 'peak_memory_mb', 1)} | {_cell(r, 'top1', 4)} |")
        out.append("")
    return "\n".join(out)


def typical_column(row: dict[str, str]) -> str:
    """The CSV column with a row's headline latency (rows written before ``latency_typical_ms`` have medians)."""
    return "latency_typical_ms" if row.get("latency_typical_ms") else "latency_median_ms"


def typical_label(row: dict[str, str]) -> str:
    """What a row's headline latency is."""
    return row.get("latency_typical_is") or "median"


def write_session(session_dir: Path, bench_root: Path, session: BenchSession, log: SessionLog) -> None:
    """Write the session files, then refresh the aggregated CSV and markdown table from the record as stored."""
    record = schema.save_json(session, session_dir / "results.json")
    for m in session.measurements:
        if m.predictions is not None:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(m.predictions, dtype=np.int16))
            write_bytes(session_dir / f"predictions_{m.model}.npy", buffer.getvalue())
    write_text(session_dir / "results.txt", results_text(session))
    csv_path, md_path, *_ = (bench_root / name for name in AGGREGATES)
    append_csv(csv_path, csv_rows(bench_record.load(record), session_dir.name))
    write_text(md_path, markdown_table(read_csv(csv_path)))
    write_text(session_dir / "log.txt", log.text())
