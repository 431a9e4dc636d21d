"""Result files and plots: emulated numbers are labelled and never share a table or a series with physical ones."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.runtime_host import REPO, portable, render_markdown, summarize
from bitat_edge import bench_record
from bitat_edge.bench_record import Accuracy, BenchSession, LayerTime, Measurement
from runtime.plots import accuracy_vs_latency, per_layer_time
from runtime.protocol import summarize_window_aggregates, summarize_windows
from runtime.results import SessionLog, append_csv, markdown_table, read_csv, results_text, write_session


def session(device: str, emulated: bool, median: float, top1: float | None = 0.9) -> BenchSession:
    """A record like a real session's: per-run timings on the host, window aggregates from the binary."""
    us = 1000 * median
    latency = (summarize_window_aggregates([{"count": 2, "avg": us, "min": us - 100, "max": us + 200, "std": 50}])
               if emulated else summarize_windows([[us - 100, us, us + 200]]))
    return BenchSession(
        date="2026-01-01T00:00:00+00:00", emulated=emulated,
        device={"name": device, "description": "d", "arch": "aarch64", "cpu": "c",
                "transport": "qemu" if emulated else "local"},
        facts={"machine": "aarch64", "cpu": "c", "kernel": "k", "glibc": "2.36", "governor": "", "long_bit": 64,
               "os": "o"},
        protocol={"threads": 1, "warmup": 1, "runs": 2, "windows": 1}, bundle="b", model_name="m",
        harness={"bitat_edge": "0", "python": "3", "command": ["bench.py"]},
        measurements=[Measurement(
            model="lce", file="model.tflite", model_sha256="ab" * 32, model_bytes=10,
            engine="benchmark-binary" if emulated else "lce-interpreter", engine_version="v", backend="x",
            latency=latency, peak_memory_mb=3.0,
            accuracy=None if top1 is None else Accuracy(correct=9, total=10, top1=top1))],
    )


def test_emulated_results_are_marked_and_kept_apart(tmp_path: Path):
    text = results_text(session("qemu-aarch64", True, 2000.0))
    assert text.startswith("*** EMULATED") and "[EMULATED]" in text
    assert "EMULATED" not in results_text(session("host", False, 1.0))
    root = tmp_path / "bench"
    write_session(root / "s1", root, session("host", False, 1.0), SessionLog())
    write_session(root / "s2", root, session("qemu-aarch64", True, 2000.0), SessionLog())
    rows = read_csv(root / "results.csv")
    assert [(r["device"], r["emulated"], r["session"]) for r in rows] == [
        ("host", "False", "s1"), ("qemu-aarch64", "True", "s2")]
    md = (root / "results.md").read_text()
    physical, emulated = md.split("## Emulated (QEMU)")
    assert "| host |" in physical and "qemu-aarch64" not in physical and "| qemu-aarch64 |" in emulated
    for name in ("results.json", "results.txt", "log.txt"):
        assert (root / "s1" / name).is_file()


def test_window_aggregates_are_labelled_and_not_stored_as_medians(tmp_path: Path):
    root = tmp_path / "bench"
    write_session(root / "s1", root, session("host", False, 1.0), SessionLog())
    write_session(root / "s2", root, session("qemu-aarch64", True, 2000.0), SessionLog())
    record = bench_record.load(root / "s2" / "results.json")
    latency = record.measurements[0].latency
    assert latency.typical_is == "median of window means" and latency.overall.median is None
    host, emulated = read_csv(root / "results.csv")
    assert (host["latency_typical_is"], host["latency_median_ms"]) == ("median", host["latency_typical_ms"])
    assert (emulated["latency_typical_is"], emulated["latency_median_ms"]) == ("median of window means", "")
    assert "median of window means" in results_text(record)
    assert "| 2000.000 | median of window means |" in (root / "results.md").read_text()


def test_csv_append_keeps_old_rows_and_header(tmp_path: Path):
    path = tmp_path / "results.csv"
    append_csv(path, [{"device": "a", "model": "lce"}])
    append_csv(path, [{"device": "b", "model": "fp32"}])
    rows = list(csv.DictReader(path.open()))
    assert [r["device"] for r in rows] == ["a", "b"] and "latency_median_ms" in rows[0]
    assert not list(tmp_path.glob(".*.tmp"))


def test_plots_are_written_and_skip_when_empty(tmp_path: Path):
    rows = [{"device": "host", "engine": "e", "model": "lce", "emulated": "False", "top1": "0.9",
             "latency_median_ms": "1.0"},
            {"device": "qemu", "engine": "b", "model": "lce", "emulated": "True", "top1": "0.9",
             "latency_median_ms": "900"}]
    assert accuracy_vs_latency(rows, tmp_path / "a.png").stat().st_size > 1000
    assert accuracy_vs_latency([{**rows[0], "top1": ""}], tmp_path / "b.png") is None
    profile = [LayerTime(name="conv", type="LceBconv2d", avg_ms=1.5), LayerTime(name="fc", type="FC", avg_ms=0.2)]
    assert per_layer_time(profile, tmp_path / "p.png", "t").stat().st_size > 1000
    assert per_layer_time([], tmp_path / "q.png", "t") is None
    assert markdown_table([]).startswith("# Benchmark results")


def test_runtime_host_summary_has_no_machine_paths(tmp_path: Path):
    run = tmp_path / "run"
    record = session("host", False, 1.5).model_copy(update={"bundle": "../../deploy"})
    write_session(run / "bench" / "host-1", run / "bench", record, SessionLog())
    summary = summarize(run / "bench" / "host-1" / "results.json", run)
    assert summary["session"] == "<run>/bench/host-1" and summary["bundle"] == "<run>/deploy"
    assert summary["models"]["lce"]["typical_ms"] == 1.5 and summary["models"]["lce"]["typical_is"] == "median"
    assert str(tmp_path) not in str(summary) and "| 1.500 | median |" in render_markdown(summary)
    assert portable(REPO / "runs" / "x" / "deploy", run) == "runs/x/deploy"
    assert portable(run / "deploy", run) == "<run>/deploy"
