"""benchmarks/methods_fmnist.py: which run each row is, how it is trained, and what its table row says."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks.methods_fmnist import main, parse_args, run_dir, train_command


def _converted_run(run: Path, report_extra: dict, precision: str = "w2a2") -> None:
    """A trained and converted run as the table reads it: summary.json and deploy/report.json (a grid run
    deployed as the integer model; with ``precision="float"`` a float run deployed as fp32 TFLite)."""
    (run / "deploy").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"epochs": 2, "steps": 842, "train_seconds": 10.0}))
    bops = 0 if precision == "float" else 4000
    layers = [{"name": "stem", "precision": "float", "macs": 100, "bops": 0, "params": 10, "bias_params": 2},
              {"name": "conv", "precision": precision, "macs": 1000, "bops": bops, "params": 100, "bias_params": 4}]
    engine = {"top1": 0.9, "agreement": 0.995}
    kind = "tflite_fp32" if precision == "float" else "tflite_int8"
    report = {"layers": {"layers": layers, "binary_intent": 0}, "lce_bconv2d": 0,
              "parity": {"engines": {"pytorch": {"top1": 0.9}, kind: engine}},
              "sizes_bytes": {kind: 5000}, "int8_grids": {"grid_convs": 1, "exact": 1, "missing": []}}
    (run / "deploy" / "report.json").write_text(json.dumps(report | report_extra))


def _float_run(tmp_path: Path) -> Path:
    """A finished float run of seed 0 as --float-run needs it: its best checkpoint and config."""
    run = tmp_path / "float"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(b"")
    (run / "config.yaml").write_text("seed: 0\ndistill: {teacher: null}\n")
    return run


def _table(tmp_path: Path, report_extra: dict) -> tuple[dict[str, str], str]:
    _float_run(tmp_path)
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


def test_float_row_at_the_teachers_seed_is_the_teacher_run_deployed_as_fp32(tmp_path):
    float_run = _float_run(tmp_path)
    _converted_run(float_run, {}, precision="float")
    args = parse_args(["--seeds", "0,1", "--float-run", str(float_run), "--runs", str(tmp_path / "runs"),
                       "--results", str(tmp_path / "results"), "--stage", "table"])
    assert run_dir("float", 0, args) == float_run and run_dir("float", 1, args) == tmp_path / "runs" / "float_s1"
    assert main(["--stage", "table", "--seeds", "0", "--float-run", str(float_run), "--runs", str(tmp_path / "runs"),
                 "--results", str(tmp_path / "results")]) == 0
    (row,) = [r for r in _csv(tmp_path / "results") if r["method"] == "float"]
    assert row["deployed_as"] == "fp32" and row["precision"] == "float" and row["bops"] == "0"
    assert row["deployed_bytes"] == "5000" and row["teacher_top1"] == ""
    assert "| float | float | 2 ep / 842 steps | fp32 | 90.00 | 90.00 | 99.50 |" in (tmp_path / "results" / "methods_fmnist.md").read_text()


def test_float_runs_train_from_the_float_config_quantized_ones_from_the_teacher(tmp_path):
    args = parse_args(["--float-run", str(_float_run(tmp_path)), "--runs", str(tmp_path / "runs")])
    float_cmd, bitat_cmd = train_command("float", 1, args), train_command("bitat", 1, args)
    assert "configs/fmnist_float.yaml" in float_cmd and not any("teacher" in a or "init_from" in a for a in float_cmd)
    assert "configs/fmnist_bitat.yaml" in bitat_cmd
    assert any(a.startswith("distill.teacher=") and a.endswith("best.pt") for a in bitat_cmd)
    assert "method={name: ste}" in train_command("ste_best", 0, args) and "data.augment=true" in train_command("ste", 0, args)


def test_float_run_without_a_seed_is_refused(tmp_path, capsys):
    float_run = _float_run(tmp_path)
    (float_run / "config.yaml").write_text("name: x\n")
    with pytest.raises(SystemExit) as stop:
        parse_args(["--float-run", str(float_run)])
    assert stop.value.code == 2
    assert "does not say which seed" in capsys.readouterr().err


def test_rows_of_other_benchmarks_are_not_kept_as_measured_rows(tmp_path):
    """Rows copied from results/bitat_fmnist.csv by earlier versions (PyTorch top-1 only) are re-measured here."""
    _table(tmp_path, {"int8_form": "int16x8"})
    results = tmp_path / "results"
    text = (results / "methods_fmnist.csv").read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    old = dict.fromkeys(header, "") | {"method": "bitat", "seed": "0", "torch_top1": "89.5", "status": "ok",
                                       "source": "results/bitat_fmnist.csv"}
    (results / "methods_fmnist.csv").write_text(text + ",".join(old[h] for h in header) + "\n", encoding="utf-8")
    assert main(["--stage", "table", "--seeds", "0", "--only", "uniq_w2a2", "--float-run", str(tmp_path / "float"),
                 "--runs", str(tmp_path / "runs"), "--results", str(results)]) == 0
    (row,) = [r for r in _csv(results) if r["method"] == "bitat"]
    assert row["status"] == "not trained"
