"""bench.py's ``native`` engine: the C engine on the tiny bundle, on the host and under qemu-aarch64."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.bench import cli
from runtime.native.bench_output import BenchProgramError, parse, split_profile


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _with_blob(deploy: Path) -> Path:
    from convert.blob import compile_blob

    (deploy / "model.blob").write_bytes(compile_blob((deploy / "model.tflite").read_bytes()).data)
    return deploy


def _measurement(deploy: Path, device: str) -> dict:
    (record,) = (deploy.parent / "bench").glob(f"{device}-*/results.json")
    (m,) = json.loads(record.read_text())["measurements"]
    return m


def test_window_lines_and_profile_split():
    out = parse("model input=float32[1,8,8,1] output=float32[1,4] arena=64 ops=2\n"
                "window index=0 runs=3 us=5.5,4.0,6.25\nwindow index=1 runs=1 us=7\n")
    assert out.windows == [[5.5, 4.0, 6.25], [7.0]]
    # hits per inference: before it, before op 0, before op 1, after the last op, after it; each count is
    # since the previous hit: (what came before), entry, op 0, op 1, exit
    markers = (1000, 10, 100, 200, 3, 50, 11, 101, 201, 3)
    first, second = split_profile(markers, n_ops=2, inferences=2)
    assert first.ops == (100, 200) and first.total == 10 + 100 + 200 + 3
    assert second.ops == (101, 201) and second.total == 11 + 101 + 201 + 3
    with pytest.raises(BenchProgramError, match="expected 10 marker hits"):
        split_profile(markers[:-1], n_ops=2, inferences=2)


@pytest.mark.slow
def test_native_engine_on_the_host_matches_the_lce_interpreter(bundle_copy: Path, built_bundle):
    _, info = built_bundle
    missing = invoke("--bundle", str(bundle_copy), "--model", "lce", "--engine", "native", "--runs", "2")
    assert missing.exit_code == 1 and "model.blob is missing" in missing.output
    _with_blob(bundle_copy)
    result = invoke("--bundle", str(bundle_copy), "--model", "lce", "--engine", "native", "--runs", "4",
                    "--windows", "2", "--warmup", "1")
    assert result.exit_code == 0, result.output
    m = _measurement(bundle_copy, "host")
    assert m["engine"] == "native" and m["backend"].startswith("runtime/native")
    assert m["accuracy"]["total"] == len(info["y"]) and m["accuracy"]["top1"] == pytest.approx(info["top1"]["lce"])
    assert m["matches_reference"] is True
    assert [w["n"] for w in m["latency"]["windows"]] == [4, 4] and m["latency"]["typical_is"] == "median"
    wrong = invoke("--bundle", str(bundle_copy), "--model", "fp32", "--engine", "native")
    assert wrong.exit_code == 1 and "runs the LCE model only" in wrong.output
    doctor = invoke("doctor", "--bundle", str(bundle_copy))
    assert "[ ok ] native engine: bitat_bench built for host" in doctor.output
    assert "[ ok ] native model: model.blob present" in doctor.output


@pytest.mark.slow
def test_native_engine_is_auto_under_qemu_aarch64(bundle_copy: Path, built_bundle):
    if shutil.which("qemu-aarch64") is None or shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("needs qemu-user and gcc-aarch64-linux-gnu")
    _, info = built_bundle
    _with_blob(bundle_copy)
    result = invoke("--device", "qemu-aarch64", "--bundle", str(bundle_copy), "--model", "lce")
    assert result.exit_code == 0, result.output
    m = _measurement(bundle_copy, "qemu-aarch64")
    assert m["engine"] == "native" and "neon-aarch64 kernels" in m["engine_version"]
    assert m["accuracy"]["top1"] == pytest.approx(info["top1"]["lce"]) and m["latency"] is None
    assert "EMULATED" in m["notes"][0]
    counted = m["instructions"]  # EMULATED, by the QEMU plugin
    ops = counted["per_op"]
    assert {op["op"] for op in ops} >= {"LceBconv2d"} and counted["per_inference"] > sum(op["instructions"] for op in ops)
    assert 0 < counted["binary_macs_per_instruction"] < 64 and counted["cpu"] == "cortex-a72"
