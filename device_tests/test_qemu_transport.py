"""QEMU user-mode: a real aarch64 program cross-compiled in the test, and lce_benchmark_model when provided."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime.bench import cli
from runtime.engines.benchmark_binary import BIN_DIR
from runtime.transports.qemu import QemuTransport

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-user is not installed (apt-get install qemu-user)"),
    pytest.mark.skipif(not Path("/usr/aarch64-linux-gnu/lib").is_dir(),
                       reason="no aarch64 sysroot (apt-get install libc6-dev-arm64-cross)"),
]


def qemu() -> QemuTransport:
    return QemuTransport("qemu-aarch64", "cortex-a72", "/usr/aarch64-linux-gnu")


def test_cross_compiled_program_runs_under_qemu(aarch64_program: Path):
    t = qemu()
    try:
        remote = f"{t.workdir()}/hello"
        t.push(str(aarch64_program), remote, executable=True)
        done = t.run([remote, "a b", "$HOME;x"], timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == "hello from 64-bit argc=3 [a b] [$HOME;x]"
        assert t.run([remote, "fail"], timeout=60).returncode == 7
        facts = t.facts()
        assert facts.machine == "aarch64" and facts.long_bit == 64 and facts.glibc and t.capabilities.emulated
    finally:
        t.close()


def test_doctor_checks_glibc_and_start_of_a_foreign_binary(aarch64_program: Path):
    result = CliRunner().invoke(cli, ["doctor", "--device", "qemu-aarch64", "--binary", str(aarch64_program)])
    out = result.output
    assert "[ ok ] reachable" in out and "[ ok ] architecture: aarch64" in out and "[ ok ] 64-bit OS" in out
    assert "[ ok ] binary architecture: hello: aarch64, 64-bit, dynamically linked" in out
    assert "[ ok ] glibc: binary needs GLIBC_2." in out
    # the program is not lce_benchmark_model: its --help does not mention --graph
    assert "[fail] binary starts" in out and result.exit_code == 1


def _benchmark_binary() -> Path | None:
    env = os.environ.get("LCE_BENCHMARK_MODEL")
    path = Path(env) if env else BIN_DIR / "lce_benchmark_model_aarch64"
    return path if path.is_file() else None


@pytest.mark.skipif(_benchmark_binary() is None,
                    reason="no lce_benchmark_model_aarch64 (build it with `make docker-lce-aarch64` or set LCE_BENCHMARK_MODEL)")
def test_lce_benchmark_model_under_qemu(device_bundle: Path, tmp_path: Path):
    binary = _benchmark_binary()
    doctor = CliRunner().invoke(cli, ["doctor", "--device", "qemu-aarch64", "--binary", str(binary),
                                      "--bundle", str(device_bundle)])
    assert doctor.exit_code == 0, doctor.output
    result = CliRunner().invoke(cli, ["--device", "qemu-aarch64", "--binary", str(binary), "--bundle",
                                      str(device_bundle), "--model", "lce", "--runs", "3", "--windows", "2",
                                      "--warmup", "1", "--profile", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    session_dir = next(tmp_path.glob("qemu-aarch64-*"))
    session = json.loads((session_dir / "results.json").read_text())
    (m,) = session["measurements"]
    assert session["emulated"] is True and m["engine"] == "benchmark-binary"
    assert m["latency"]["overall"]["n"] == 6 and any(row["type"] == "LceBconv2d" for row in m["profile"])
    assert "EMULATED" in (session_dir / "results.txt").read_text()


STAND_IN_C = r"""
#include <stdio.h>
#include <string.h>
/* Replays a recorded-format lce_benchmark_model output (OUTPUT, set at compile time). */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0) { puts("usage: lce_benchmark_model --graph=<model.tflite>"); return 0; }
    FILE *f = fopen(OUTPUT, "r");
    if (!f) return 2;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
    fclose(f);
    return 0;
}
"""


def test_benchmark_binary_engine_path_with_a_stand_in(device_bundle: Path, tmp_path: Path):
    """The whole benchmark-binary path (doctor, push, qemu, parse, windows, profile, plots) with an aarch64
    stand-in that prints the constructed fixture tests/runtime/fixtures/profiling.txt; the real binary is
    covered by test_lce_benchmark_model_under_qemu when one is provided."""
    import subprocess

    fixture = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "fixtures" / "profiling.txt"
    source = tmp_path / "standin.c"
    source.write_text(STAND_IN_C)
    binary = tmp_path / "lce_benchmark_model_standin"
    subprocess.run(["aarch64-linux-gnu-gcc", f'-DOUTPUT="{fixture}"', "-O2", "-o", str(binary), str(source)],
                   check=True, timeout=120)
    doctor = CliRunner().invoke(cli, ["doctor", "--device", "qemu-aarch64", "--binary", str(binary),
                                      "--bundle", str(device_bundle)])
    assert doctor.exit_code == 0, doctor.output
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["--device", "qemu-aarch64", "--binary", str(binary), "--bundle",
                                      str(device_bundle), "--model", "lce", "--runs", "50", "--windows", "2",
                                      "--profile", "--out", str(out)])
    assert result.exit_code == 0, result.output
    session_dir = next(out.glob("qemu-aarch64-*"))
    session = json.loads((session_dir / "results.json").read_text())
    (m,) = session["measurements"]
    assert session["emulated"] is True and m["engine"] == "benchmark-binary" and m["accuracy"] is None
    # the binary reports window aggregates: the typical value is the median of window means, labelled so
    assert m["latency"]["overall"]["n"] == 100 and m["latency"]["typical_ms"] == 45.9342
    assert m["latency"]["typical_is"] == "median of window means" and m["latency"]["overall"]["median"] is None
    assert [row["type"] for row in m["profile"]][2] == "LceBconv2d"
    assert (session_dir / "per_layer_lce.png").is_file()
    assert "*** EMULATED" in (session_dir / "results.txt").read_text()
