"""Session results: ``log.txt``, ``results.json``, ``results.txt`` per session; ``results.csv`` and
``results.md`` aggregated over sessions. Every file is written atomically."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bitat_edge.atomic import write_json, write_text

CSV_COLUMNS = [
    "date", "device", "emulated", "transport", "engine", "backend", "model", "threads", "warmup", "runs",
    "windows", "latency_median_ms", "latency_iqr_ms", "latency_min_ms", "latency_max_ms", "latency_std_ms",
    "peak_memory_mb", "top1", "eval_samples", "model_sha256", "session",
]


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


def csv_rows(session: dict[str, Any], session_dir: str) -> list[dict[str, Any]]:
    """One CSV row per measured model."""
    rows = []
    for m in session["measurements"]:
        overall = m["latency"]["overall"]
        accuracy = m.get("accuracy") or {}
        rows.append({
            "date": session["date"], "device": session["device"]["name"], "emulated": session["emulated"],
            "transport": session["device"]["transport"], "engine": m["engine"], "backend": m["backend"],
            "model": m["model"], "threads": session["protocol"]["threads"], "warmup": session["protocol"]["warmup"],
            "runs": session["protocol"]["runs"], "windows": session["protocol"]["windows"],
            "latency_median_ms": overall["median"], "latency_iqr_ms": overall.get("iqr"),
            "latency_min_ms": overall["min"], "latency_max_ms": overall["max"], "latency_std_ms": overall["std"],
            "peak_memory_mb": m.get("peak_memory_mb"), "top1": accuracy.get("top1"),
            "eval_samples": accuracy.get("total"), "model_sha256": m["model_sha256"], "session": session_dir,
        })
    return rows


def results_text(session: dict[str, Any]) -> str:
    """The human-readable ``results.txt``."""
    emulated = session["emulated"]
    facts = session["facts"]
    out = io.StringIO()
    if emulated:
        out.write("*** EMULATED: timings come from QEMU user-mode emulation; they are not device latencies ***\n\n")
    dev = session["device"]
    out.write(f"device     {dev['name']} ({dev['description']})\n")
    out.write(f"transport  {dev['transport']}{'  [EMULATED]' if emulated else ''}\n")
    out.write(f"system     {facts.get('machine')} | {facts.get('cpu')} | kernel {facts.get('kernel')} | "
              f"glibc {facts.get('glibc') or '-'} | governor {facts.get('governor') or '-'} | "
              f"{facts.get('long_bit')}-bit | {facts.get('os')}\n")
    p = session["protocol"]
    out.write(f"protocol   threads={p['threads']} warmup={p['warmup']} runs={p['runs']} windows={p['windows']}\n")
    out.write(f"bundle     {session['bundle']}\n")
    out.write(f"date       {session['date']}\n\n")
    header = f"{'model':6} {'engine':20} {'median ms':>10} {'IQR ms':>8} {'min ms':>8} {'max ms':>8} " \
             f"{'std ms':>8} {'peak MB':>8} {'top-1':>8}  sha256"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for m in session["measurements"]:
        o = m["latency"]["overall"]
        top1 = (m.get("accuracy") or {}).get("top1")
        out.write(
            f"{m['model']:6} {m['engine']:20} {_fmt(o['median']):>10} {_fmt(o.get('iqr')):>8} {_fmt(o['min']):>8} "
            f"{_fmt(o['max']):>8} {_fmt(o['std']):>8} {_fmt(m.get('peak_memory_mb'), 1):>8} "
            f"{_fmt(top1, 4):>8}  {m['model_sha256'][:12]}\n"
        )
    ratios = session.get("ratios") or {}
    if ratios:
        out.write("\nlatency ratios (median): " + ", ".join(f"{k} = {v:.2f}x" for k, v in ratios.items()) + "\n")
    for m in session["measurements"]:
        ref = m.get("reference_top1")
        if ref is not None and m.get("accuracy"):
            verdict = "matches" if m.get("matches_reference") else "DIFFERS FROM"
            out.write(f"{m['model']}: top-1 {m['accuracy']['top1']:.4f} {verdict} the convert stage's {ref:.4f}\n")
        for note in m.get("notes", []):
            out.write(f"note ({m['model']}, {m['engine']}): {note}\n")
    if emulated:
        out.write("\n*** EMULATED ***\n")
    return out.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def append_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Add ``rows`` to the aggregated CSV (read, append, atomic rewrite)."""
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
    out = ["# Benchmark results", "", "Generated from results.csv; every number comes from a results.json.", ""]
    for emulated, title in (("False", "Physical devices and host"), ("True", "Emulated (QEMU) — not device latency")):
        group = [r for r in rows if str(r["emulated"]) == emulated]
        if not group:
            continue
        out += [f"## {title}", "",
                "| date | device | engine | model | threads | median ms | IQR ms | peak MB | top-1 |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in group:
            out.append(f"| {r['date']} | {r['device']} | {r['engine']} | {r['model']} | {r['threads']} | "
                       f"{_cell(r, 'latency_median_ms', 3)} | {_cell(r, 'latency_iqr_ms', 3)} | "
                       f"{_cell(r, 'peak_memory_mb', 1)} | {_cell(r, 'top1', 4)} |")
        out.append("")
    return "\n".join(out)


def write_session(session_dir: Path, bench_root: Path, session: dict[str, Any], log: SessionLog) -> None:
    """Write the session files, then refresh the aggregated CSV and markdown table."""
    write_json(session_dir / "results.json", session)
    write_text(session_dir / "results.txt", results_text(session))
    append_csv(bench_root / "results.csv", csv_rows(session, session_dir.name))
    write_text(bench_root / "results.md", markdown_table(read_csv(bench_root / "results.csv")))
    write_text(session_dir / "log.txt", log.text())


def load_session(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
