"""bitat_edge.outdir: what a writer refuses (nothing touched), atomic replacement, and kill -9 at random points."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from outdir_writer import generation_of, write_generation

from bitat_edge import outdir
from bitat_edge.layout import BundleDir, RunDir

REPO = Path(__file__).resolve().parents[1]
KILLS = 40


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


def _check(out: Path, inputs=()) -> None:
    outdir.check(out, not_ours=lambda p: BundleDir(p).not_a_bundle(), what="bundle", inputs=inputs)


def test_new_empty_and_previous_bundles_are_accepted(tmp_path):
    _check(tmp_path / "new" / "deeper")
    (tmp_path / "empty").mkdir()
    _check(tmp_path / "empty")
    write_generation(tmp_path / "bundle", 0, random.Random(0))
    _check(tmp_path / "bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "empty"]


@pytest.mark.parametrize("case", ["not a bundle", "bundle plus a user file", "file", "symlink", "cwd", "cwd parent",
                                  "holds an input"])
def test_refusals_are_one_line_and_touch_nothing(tmp_path, monkeypatch, case):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "mine" / "model.onnx").write_bytes(b"onnx")
    inputs = ()
    out = tmp_path / "mine"
    if case == "bundle plus a user file":
        write_generation(tmp_path / "b", 0, random.Random(0))
        (tmp_path / "b" / "notes.txt").write_text("keep me")
        out = tmp_path / "b"
    elif case == "file":
        out = tmp_path / "mine" / "notes.txt"
    elif case == "symlink":
        write_generation(tmp_path / "b", 0, random.Random(0))
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "b")
    elif case in ("cwd", "cwd parent"):
        (tmp_path / "empty" / "sub").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / "empty" / "sub")
        out = Path(".") if case == "cwd" else Path("..")
    elif case == "holds an input":
        write_generation(tmp_path / "b", 0, random.Random(0))
        (tmp_path / "b" / "in").mkdir()
        inputs = (tmp_path / "b" / "in" / "model.onnx",)
        out = tmp_path / "b"
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as info:
        _check(out, inputs)
    message = str(info.value)
    assert message.startswith(f"{out}: ") and "\n" not in message, message
    assert snapshot(tmp_path) == before


def test_replace_swaps_in_the_new_directory_and_leaves_nothing_beside(tmp_path):
    out = tmp_path / "b"
    write_generation(out, 1, random.Random(1))
    write_generation(out, 2, random.Random(2))
    assert generation_of(out) == 2 and [p.name for p in tmp_path.iterdir()] == ["b"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_failure_while_filling_keeps_the_previous_directory(tmp_path):
    out = tmp_path / "b"
    write_generation(out, 1, random.Random(1))
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError), outdir.replace(out) as new:
        (new / "model.tflite").write_bytes(b"half")
        raise RuntimeError("disk on fire")
    assert snapshot(tmp_path) == before


def test_fallback_without_exchange_and_recovery_of_its_window(tmp_path, monkeypatch):
    out = tmp_path / "b"
    write_generation(out, 1, random.Random(1))
    monkeypatch.setattr(outdir, "exchange", lambda a, b: (_ for _ in ()).throw(OSError(errno.ENOSYS, "no")))
    write_generation(out, 2, random.Random(2))
    assert generation_of(out) == 2 and [p.name for p in tmp_path.iterdir()] == ["b"]
    # a kill between the fallback's two renames: ``out`` is gone, the old bundle is beside it
    os.rename(out, tmp_path / ".b.old-123")
    (tmp_path / ".b.new-xyz").mkdir()
    outdir.recover(out)
    assert generation_of(out) == 2 and [p.name for p in tmp_path.iterdir()] == ["b"]


def test_run_directory_marker(tmp_path):
    run = RunDir(tmp_path)
    assert run.not_a_run()
    run.config.write_text("name: x\n")
    run.env.write_text("{}\n")
    assert run.not_a_run() == ""


def _kill_at_random_points(tmp_path: Path, fallback: bool, kills: int) -> list[int]:
    out = tmp_path / "deploy"
    write_generation(out, 0, random.Random(0))
    rng = random.Random(13)
    seen = [0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    for _ in range(kills):
        argv = [sys.executable, str(REPO / "tests" / "outdir_writer.py"), str(out)] + (["--fallback"] if fallback else [])
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if fallback:  # the window between two renames may leave ``out`` missing until the next write recovers it
            with outdir._locked(out.parent):
                outdir.recover(out)
        generation = generation_of(out)  # complete, one generation, never older than before
        assert generation >= seen[-1]
        seen.append(generation)
    return seen


def test_kill_minus_9_never_leaves_a_partial_or_missing_bundle(tmp_path):
    seen = _kill_at_random_points(tmp_path, fallback=False, kills=KILLS)
    print(f"outdir kill test: {KILLS} kills (exchange), generations {seen[0]}..{seen[-1]}, "
          f"{len(set(seen))} distinct bundles seen, every one complete")
    assert len(set(seen)) >= 3  # kills landed after swaps too, not only before the first


def test_kill_minus_9_with_the_two_rename_fallback_is_recovered(tmp_path):
    seen = _kill_at_random_points(tmp_path, fallback=True, kills=KILLS // 2)
    assert len(set(seen)) >= 3
