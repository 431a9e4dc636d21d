"""Emulation tooling that needs no emulator: the build cache, the plugin's file format, invoke marking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import remote_measure
from runtime.emulation.cache import build_into
from runtime.emulation.counts import InsnCounts, marked_invokes, read_counts, single_threaded
from runtime.emulation.sysroot import ensure_sysroot
from runtime.errors import BenchError


def test_build_into_renames_only_a_complete_build(tmp_path: Path):
    final = tmp_path / "entry"
    with build_into(final) as work:
        (work / "file").write_text("done")
        assert not final.exists()
    assert (final / "file").read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
    assert oct(final.stat().st_mode & 0o777) == "0o755"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, BenchError])
def test_build_into_leaves_nothing_when_interrupted(tmp_path: Path, interrupt: type[BaseException]):
    final = tmp_path / "entry"
    with pytest.raises(interrupt), build_into(final) as work:
        (work / "half").write_text("half")
        raise interrupt("stop")
    assert list(tmp_path.iterdir()) == []


def test_build_into_keeps_the_entry_another_process_finished_first(tmp_path: Path):
    final = tmp_path / "entry"
    with build_into(final) as work:
        (work / "mine").write_text("mine")
        final.mkdir()
        (final / "theirs").write_text("theirs")
    assert [p.name for p in final.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_build_into_removes_partials_of_dead_processes(tmp_path: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".entry.partial-{dead}-abc"
    alive = tmp_path / f".entry.partial-{os.getpid()}-def"
    stale.mkdir()
    alive.mkdir()
    with build_into(tmp_path / "entry"):
        pass
    assert not stale.exists() and alive.exists()


def test_read_counts_parses_the_plugin_file(tmp_path: Path):
    path = tmp_path / "counts.txt"
    path.write_text("marker 120\nmarker 7\nvcpus 1\ntotal 400\n")
    assert read_counts(path) == InsnCounts((120, 7), 400, 1)


@pytest.mark.parametrize(("text", "message"), [
    ("marker 5\n", "did not exit normally"),
    ("marker five\ntotal 3\n", "not an instruction-count line"),
    ("", "did not exit normally"),
])
def test_read_counts_rejects_incomplete_or_foreign_files(tmp_path: Path, text: str, message: str):
    path = tmp_path / "counts.txt"
    path.write_text(text)
    with pytest.raises(BenchError, match=message):
        read_counts(path)


def test_counts_of_several_threads_are_refused():
    with pytest.raises(BenchError, match="2 threads"):
        single_threaded(InsnCounts((), 10, 2), "model.tflite")


def test_marked_invokes_subtracts_the_empty_region():
    # start, invoke 1, gap, invoke 2, gap, empty pair
    counts = InsnCounts((9999, 1617, 50, 1620, 40, 617), 20000, 1)
    assert marked_invokes(counts, 2) == ([1000, 1003], 617)
    with pytest.raises(BenchError, match="expected 8 markers"):
        marked_invokes(counts, 3)


def test_armv7_has_no_litert_sysroot():
    with pytest.raises(BenchError, match="no armv7 wheel"):
        ensure_sysroot("arm")


def test_remote_measure_marks_each_invoke_and_reports_predictions(built_bundle, tmp_path: Path, monkeypatch):
    """The marking calls wrap exactly the invokes (checked by recording the call order), and predictions are
    the argmax per eval image of the same interpreter."""
    deploy, info = built_bundle
    events: list[str] = []
    real_getppid = os.getppid
    monkeypatch.setattr(remote_measure.os, "getppid", lambda: events.append("mark") or real_getppid())
    runner, *_ = remote_measure._tflite_runner((deploy / "model_fp32.tflite").read_bytes(), 1)
    traced = remote_measure.Runner(runner.set_input, lambda: (events.append("invoke"), runner.invoke())[1],
                                   runner.output)
    remote_measure._mark_invokes(traced, info["x"][:3])
    assert events == ["mark", "invoke", "mark"] * 3 + ["mark", "mark"]

    result = remote_measure.measure(str(deploy / "model_fp32.tflite"), "tflite", 1, 0, 1, 1,
                                    str(deploy / "eval.npz"), mark_invokes=2)
    expected = [int(np.argmax(runner(info["x"][i : i + 1]))) for i in range(len(info["x"]))]
    assert result["predictions"] == expected
    assert result["accuracy"]["correct"] == sum(p == y for p, y in zip(expected, info["y"], strict=True))


def test_lce_runner_and_lce_interpreter_share_one_extension_module(built_bundle):
    """remote_measure loads LCE's extension without TensorFlow; the converter's LCE interpreter loads it by
    its package name. In one process (bench after convert, or the reverse) both must work: pybind registers
    the extension's types once."""
    deploy, _ = built_bundle
    code = (
        "import sys; from runtime import remote_measure; import larq_compute_engine as lce\n"
        f"model = open({str(deploy / 'model.tflite')!r}, 'rb').read()\n"
        "first = sys.argv[1] == 'runner-first'\n"
        "if first: remote_measure._lce_runner(model, 1)\n"
        "lce.testing.Interpreter(model, 1)\n"
        "if not first: remote_measure._lce_runner(model, 1)\n"
        "print('both ran')\n")
    for order in ("runner-first", "interpreter-first"):
        done = subprocess.run([sys.executable, "-c", code, order], capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0 and "both ran" in done.stdout, (order, done.stderr[-2000:])
