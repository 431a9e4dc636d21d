"""bench.py on the host: the end-to-end path on a real tiny bundle, and its clear errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bitat_edge import bench_record
from runtime.bench import cli

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_host_bench_all_models_writes_every_result_file(bundle_copy: Path, built_bundle):
    _, info = built_bundle
    result = invoke("--device", "host", "--bundle", str(bundle_copy.parent), "--runs", "8", "--windows", "2",
                    "--warmup", "2")
    assert result.exit_code == 0, result.output
    bench = bundle_copy.parent / "bench"
    sessions = [p for p in bench.iterdir() if p.is_dir()]
    assert len(sessions) == 1 and sessions[0].name.startswith("host-")
    record = bench_record.load(sessions[0] / "results.json")  # the typed record validates
    assert record.bundle == "../../deploy"  # relative to the session directory: no machine paths
    session = json.loads((sessions[0] / "results.json").read_text())
    by_model = {m["model"]: m for m in session["measurements"]}
    assert set(by_model) == {"lce", "fp32", "int8"}
    lce = by_model["lce"]
    assert lce["engine"] == "lce-interpreter" and lce["backend"] == "larq_compute_engine"
    assert lce["accuracy"]["total"] == len(info["y"]) and lce["accuracy"]["top1"] == pytest.approx(info["top1"]["lce"])
    for m in by_model.values():
        assert m["matches_reference"] is True, m["model"]
    assert by_model["fp32"]["engine"] == "tflite-interpreter" and by_model["fp32"]["backend"] == "tensorflow"
    assert lce["delegate"] == "none" and by_model["fp32"]["delegate"].startswith("xnnpack")  # which kernels were timed
    for m in by_model.values():
        assert len(m["latency"]["windows"]) == 2 and m["latency"]["overall"]["n"] == 16
        assert m["latency"]["overall"]["median"] > 0 and m["peak_memory_mb"] > 0
        assert m["latency"]["typical_ms"] == m["latency"]["overall"]["median"]
        assert m["latency"]["typical_is"] == "median"
        assert len(m["model_sha256"]) == 64 and m["model_bytes"] > 0 and session["emulated"] is False
    assert session["protocol"] == {"threads": 1, "runs": 8, "warmup": 2, "windows": 2}
    assert set(session["ratios"]) == {"fp32/lce", "int8/lce"}
    assert session["facts"]["machine"] and session["date"] and session["emulated"] is False
    text = (sessions[0] / "results.txt").read_text()
    assert "EMULATED" not in text and "matches the convert stage" in text
    assert "fp32: tflite-interpreter ran with delegate: xnnpack" in text
    assert "lce-interpreter" in (sessions[0] / "log.txt").read_text()
    rows = list(csv.DictReader((bench / "results.csv").open()))
    assert [r["model"] for r in rows] == ["lce", "fp32", "int8"]
    assert "| host | lce-interpreter | lce |" in (bench / "results.md").read_text()
    assert (bench / "accuracy_vs_latency.png").stat().st_size > 1000

    again = invoke("--bundle", str(bundle_copy), "--model", "lce", "--runs", "3", "--windows", "1",
                   "--eval-samples", "5", "--out", str(bench))
    assert again.exit_code == 0, again.output
    rows = list(csv.DictReader((bench / "results.csv").open()))
    assert len(rows) == 4 and rows[-1]["eval_samples"] == "5"


def test_no_accuracy_runs_without_eval_set(bundle_copy: Path):
    (bundle_copy / "eval.npz").unlink()
    failed = invoke("--bundle", str(bundle_copy), "--model", "lce", "--runs", "2", "--windows", "1")
    assert failed.exit_code == 1 and "eval.npz is missing" in failed.output and "--no-accuracy" in failed.output
    ok = invoke("--bundle", str(bundle_copy), "--model", "lce", "--runs", "2", "--windows", "1", "--no-accuracy")
    assert ok.exit_code == 0, ok.output
    assert "Traceback" not in failed.output


def test_unlabelled_eval_set_gives_latency_and_a_note(bundle_copy: Path):
    with np.load(bundle_copy / "eval.npz") as data:
        x = data["x"]
    np.savez(bundle_copy / "eval.npz", x=x)
    result = invoke("--bundle", str(bundle_copy), "--model", "lce", "--runs", "2", "--windows", "1")
    assert result.exit_code == 0, result.output
    session = json.loads(next((bundle_copy.parent / "bench").glob("host-*/results.json")).read_text())
    (m,) = session["measurements"]
    assert m["accuracy"] is None and "no labels" in m["notes"][0]


def test_int16x8_form_of_the_int8_model_is_noted(bundle_copy: Path):
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["deploy"]["int8_form"] = "int16x8"  # what the convert stage writes for a graph with integer grids
    path.write_text(json.dumps(data))
    result = invoke("--bundle", str(bundle_copy), "--model", "int8", "--runs", "2", "--windows", "1")
    assert result.exit_code == 0, result.output
    session = next((bundle_copy.parent / "bench").glob("host-*"))
    (m,) = json.loads((session / "results.json").read_text())["measurements"]
    assert m["model"] == "int8" and any(note.startswith("model_int8.tflite holds the int16x8 form (int8 weights, "
                                                        "int16 activations") for note in m["notes"])
    assert "holds the int16x8 form" in (session / "results.txt").read_text()


def test_tflite_interpreter_refuses_lce_ops(bundle_copy: Path):
    result = invoke("--bundle", str(bundle_copy), "--model", "lce", "--engine", "tflite-interpreter")
    assert result.exit_code == 1
    assert "uses custom ops LceBconv2d, LceQuantize that tflite-interpreter does not register" in result.output


def test_missing_and_wrong_architecture_binary(bundle_copy: Path, aarch64_program: Path, monkeypatch):
    monkeypatch.delenv("LCE_BENCHMARK_MODEL", raising=False)
    missing = invoke("--bundle", str(bundle_copy), "--model", "lce", "--engine", "benchmark-binary",
                     "--binary", str(bundle_copy / "nope"))
    assert missing.exit_code == 1 and "no such file" in missing.output
    wrong = invoke("--bundle", str(bundle_copy), "--model", "lce", "--engine", "benchmark-binary",
                   "--binary", str(aarch64_program))
    assert wrong.exit_code == 1 and "built for aarch64" in wrong.output and "wrong architecture" in wrong.output


def test_qemu_device_without_binary_says_how_to_build_it(bundle_copy: Path, monkeypatch):
    monkeypatch.delenv("LCE_BENCHMARK_MODEL", raising=False)
    if (REPO / "runtime" / "bin" / "lce_benchmark_model_aarch64").exists():
        pytest.skip("a benchmark binary is installed")
    result = invoke("--device", "qemu-aarch64", "--bundle", str(bundle_copy))
    assert result.exit_code == 1 and "make docker-lce-aarch64" in result.output


def test_user_errors_are_one_sentence_without_traceback(tmp_path: Path):
    unknown = invoke("--device", "rpi9")
    assert unknown.exit_code == 1 and "known devices:" in unknown.output
    no_addr = invoke("--device", "rpi4")
    assert no_addr.exit_code == 1 and "--device qemu-aarch64" in no_addr.output
    no_bundle = invoke("--bundle", str(tmp_path / "none"))
    assert no_bundle.exit_code == 1 and "make train && make convert" in no_bundle.output
    bad_runs = invoke("--bundle", str(tmp_path / "none"), "--runs", "0")
    assert bad_runs.exit_code == 1
    for result in (unknown, no_addr, no_bundle, bad_runs):
        assert "Traceback" not in result.output


def test_script_and_console_entry_points():
    script = subprocess.run([sys.executable, "runtime/bench.py", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert script.returncode == 0 and "--device" in script.stdout and "doctor" in script.stdout
    console = subprocess.run([str(Path(sys.executable).parent / "bitat-edge"), "bench", "doctor", "--help"],
                             capture_output=True, text=True, timeout=120)
    assert console.returncode == 0 and "64-bit OS" in console.stdout


def test_doctor_on_host_checks_bundle_ops(bundle_copy: Path):
    result = invoke("doctor", "--device", "host", "--bundle", str(bundle_copy))
    assert "[ ok ] reachable" in result.output and "[ ok ] architecture" in result.output
    assert "LceBconv2d×1, LceQuantize×1: all registered" in result.output
    assert result.exit_code == 0, result.output


def test_doctor_finds_profile_architecture_mismatch(tmp_path: Path):
    import platform

    if platform.machine() == "aarch64":
        pytest.skip("needs a non-aarch64 host to fake the mismatch")
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  not-a-pi:\n    like: rpi4\n    transport: local\n")
    result = invoke("doctor", "--device", "not-a-pi", "--inventory", str(inv))
    assert result.exit_code == 1
    assert f"[fail] architecture: target reports {platform.machine()}, profile 'not-a-pi' expects aarch64" in result.output
    assert "check(s) failed on 'not-a-pi'" in result.output


def one_line_error(result) -> str:
    """The CLI failed with exit 1 and a single ``Error: ...`` line, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_bundle_mistakes_are_one_line(bundle_copy: Path):
    manifest = bundle_copy / "manifest.json"
    good = manifest.read_text()
    data = json.loads(good)
    data["deploy"]["input_shape"] = [1, 8, 8]
    manifest.write_text(json.dumps(data))
    line = one_line_error(invoke("--bundle", str(bundle_copy), "--model", "lce"))
    assert "manifest.json: field 'deploy.input_shape' must be [1, H, W, C]" in line
    data = json.loads(good)
    data["deploy"]["flavour"] = "x"
    manifest.write_text(json.dumps(data))
    line = one_line_error(invoke("--bundle", str(bundle_copy), "--model", "lce"))
    assert "unknown field 'deploy.flavour'; valid keys in 'deploy': blob, input_layout, input_shape," in line
    del data["deploy"]
    manifest.write_text(json.dumps(data))
    assert "field 'deploy' is missing" in one_line_error(invoke("--bundle", str(bundle_copy), "--model", "lce"))
    manifest.write_text(good)
    model = bundle_copy / "model.tflite"
    model.write_bytes(model.read_bytes()[:300])
    line = one_line_error(invoke("--bundle", str(bundle_copy), "--model", "lce"))
    assert "model.tflite: the TFLite flatbuffer is truncated or corrupt" in line
    (bundle_copy / "eval.npz").write_bytes(b"not a zip")
    line = one_line_error(invoke("--bundle", str(bundle_copy), "--model", "fp32"))
    assert "eval.npz: not a readable .npz eval file" in line


def test_inventory_mistakes_are_one_line(tmp_path: Path):
    inventory = tmp_path / "inv.yaml"
    cases = {
        "devices:\n  rpi4:\n    transport: ssh://pi@10.0.0.1\n    connect_timout: 5\n":
            "inv.yaml (device 'rpi4'): unknown field 'connect_timout'; valid keys in the top level: binary_path, connect_timeout,",
        "devices:\n  rpi4:\n    transport: ssh://pi@10.0.0.1\n    threads: 0\n":
            "inv.yaml (device 'rpi4'): field 'threads' must be empty or an integer > 0, got 0",
        "devices:\n  rpi4: ssh://pi@10.0.0.1\n": "inv.yaml: field 'devices.rpi4' must be a mapping, got 'ssh://pi@10.0.0.1'",
        "devices:\n  pi:\n    like: rpi9\n": "device 'pi': unknown; known devices:",
        "devices:\n  rpi4:\n    transport: ssh://pi@10.0.0.1:99999\n": "write it as ssh://user@host[:port]",
        "devices:\n  rpi4:\n    transport: 'adb:R5'\n    key: [1]\n": "field 'key' must be empty or a string, got [1]",
        "- rpi4\n": "the device inventory file must be a YAML mapping, got list",
    }
    for text, expected in cases.items():
        inventory.write_text(text)
        for command in ([], ["doctor"]):
            line = one_line_error(invoke(*command, "--device", "rpi4" if "pi:" not in text else "pi",
                                         "--inventory", str(inventory), "--bundle", str(tmp_path)))
            assert expected in line, (text, line)
