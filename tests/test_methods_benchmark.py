"""benchmarks/methods_fmnist.py's table: the "deployed as" column names the integer form from the deploy report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from benchmarks.methods_fmnist import main


def _converted_run(run: Path, report_extra: dict) -> None:
    """A trained and converted grid run as the table reads it: summary.json and deploy/report.json."""
    (run / "deploy").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"epochs": 2, "steps": 842, "train_seconds": 10.0}))
    layers = [{"name": "stem", "precision": "float", "macs": 100, "bops": 0, "params": 10, "bias_params": 2},
              {"name": "conv", "precision": "w2a2", "macs": 1000, "bops": 4000, "params": 100, "bias_params": 4}]
    engine = {"top1": 0.9, "agreement": 0.995}
    report = {"layers": {"layers": layers, "binary_intent": 0}, "lce_bconv2d": 0,
              "parity": {"engines": {"pytorch": {"top1": 0.9}, "tflite_int8": engine}},
              "sizes_bytes": {"tflite_int8": 5000}, "int8_grids": {"grid_convs": 1, "exact": 1, "missing": []}}
    (run / "deploy" / "report.json").write_text(json.dumps(report | report_extra))


def _table(tmp_path: Path, report_extra: dict) -> tuple[dict[str, str], str]:
    (tmp_path / "float" / "checkpoints").mkdir(parents=True)
    (tmp_path / "float" / "checkpoints" / "best.pt").write_bytes(b"")
    _converted_run(tmp_path / "runs" / "uniq_w2a2_s0", report_extra)
    results = tmp_path / "results"
    assert main(["--stage", "table", "--seeds", "0", "--only", "uniq_w2a2", "--float-run", str(tmp_path / "float"),
                 "--runs", str(tmp_path / "runs"), "--results", str(results)]) == 0
    (row,) = [r for r in _csv(results) if r["method"] == "uniq_w2a2"]
    return row, (results / "methods_fmnist.md").read_text(encoding="utf-8")


def _csv(results: Path) -> list[dict[str, str]]:
    with open(results / "methods_fmnist.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_grid_run_is_deployed_as_the_form_its_report_names(tmp_path):
    row, md = _table(tmp_path, {"int8_form": "int16x8"})
    assert row["deployed_as"] == "int16x8" and row["deployed_top1"] == "90.0" and row["agreement"] == "99.5"
    assert row["bops"] == "4000"  # the grid conv at its trained w2a2; the float stem runs in float
    assert "| uniq_w2a2 | w2a2 | 2 ep / 842 steps | int16x8 |" in md
    assert "grid convs with int16 activations x int8 weights" in md


def test_report_without_a_form_is_the_int8_form(tmp_path):
    row, md = _table(tmp_path, {})
    assert row["deployed_as"] == "int8" and row["bops"] == str(4000 + 100 * 64)  # float stem at 8 x 8
    assert "| uniq_w2a2 | w2a2 | 2 ep / 842 steps | int8 |" in md


def test_table_keeps_earlier_rows_whose_run_directories_are_gone(tmp_path):
    """results/ is the record: a later table keeps the measured rows of runs no longer on disk, adds the new
    ones, lists every variant, and re-measures a run that is present."""
    _table(tmp_path, {"int8_form": "int16x8"})
    results = tmp_path / "results"
    (tmp_path / "runs" / "uniq_w2a2_s0").rename(tmp_path / "gone")
    _converted_run(tmp_path / "runs" / "uniq_w4a4_s1", {"int8_form": "int16x8"})
    assert main(["--stage", "table", "--seeds", "1", "--only", "uniq_w4a4", "--float-run", str(tmp_path / "float"),
                 "--runs", str(tmp_path / "runs"), "--results", str(results)]) == 0
    rows = {(r["method"], r["seed"]): r for r in _csv(results)}
    assert rows[("uniq_w2a2", "0")]["status"] == rows[("uniq_w4a4", "1")]["status"] == "ok"
    assert rows[("uniq_w2a2", "0")]["agreement"] == "99.5"
    assert rows[("qaf_w4", "0")]["status"] == rows[("uniq_w2a2", "1")]["status"] == "not trained"
    md = (results / "methods_fmnist.md").read_text(encoding="utf-8")
    assert "| uniq_w2a2 | w2a2 |" in md and "| uniq_w4a4 | w2a2 |" in md and "qaf_w4 seed 0 (not trained)" in md
