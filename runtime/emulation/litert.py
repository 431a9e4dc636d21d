"""LiteRT under QEMU: ``remote_measure.py`` run by the sysroot's aarch64 Python.

Two kinds of run, because counting costs emulation speed and accuracy needs many images:
``top1`` runs the eval images without the plugin; ``count`` marks a few invokes with ``os.getppid()``
and the plugin counts exactly the instructions of each ``Interpreter.invoke()`` (EMULATED, not time).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runtime import remote_measure
from runtime.emulation.cache import Log, log_stderr
from runtime.emulation.counts import GETPPID, marked_invokes, plugin_args, read_counts, single_threaded
from runtime.emulation.sysroot import Sysroot
from runtime.errors import BenchError, TransportTimeout

SCRIPT = Path(remote_measure.__file__)


@dataclass(frozen=True)
class InvokeCount:
    """EMULATED instructions of ``Interpreter.invoke()``: one figure per counted image."""

    per_image: list[int]
    marking_cost: int  # an empty marked region, subtracted from each figure

    @property
    def per_inference(self) -> int:
        return round(sum(self.per_image) / len(self.per_image))


def run_guest(argv: list[str], env: dict[str, str], timeout: float, log: Log) -> str:
    """Run an emulated command; forward its 'progress:' lines to ``log``; return stderr.

    The command runs in its own process group, which is killed on timeout, on error and on Ctrl-C,
    so an interrupted benchmark leaves no emulator running.
    """
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("progress:"):
                log(f"  {line.strip()[len('progress:'):].strip()}")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TransportTimeout(f"{Path(argv[0]).name}: still running after {timeout:g} s and was stopped") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
    stderr = "".join(lines)
    if proc.returncode != 0:
        tail = [line for line in stderr.splitlines() if line.strip() and not line.startswith("progress:")]
        raise BenchError(f"{Path(argv[0]).name} exited with {proc.returncode}: {tail[-1] if tail else 'no output'}")
    return stderr


def _measure_args(model: Path, eval_npz: Path, images: int | None, out: Path) -> list[str]:
    args = [str(SCRIPT), "--model", str(model), "--backend", "tflite", "--threads", "1", "--warmup", "1",
            "--runs", "1", "--windows", "1", "--eval", str(eval_npz), "--out", str(out)]
    return args + (["--eval-samples", str(images)] if images else [])


def top1(sysroot: Sysroot, model: Path, eval_npz: Path, images: int | None = None, timeout: float = 7200,
         log: Log = log_stderr) -> dict:
    """``remote_measure.py``'s result for ``model`` on the first ``images`` eval images (all if None),
    with ``predictions`` per image; no plugin, so the emulation runs at full speed."""
    with tempfile.TemporaryDirectory(prefix="bitat-edge-litert-") as tmp:
        out = Path(tmp) / "result.json"
        args = _measure_args(model, eval_npz, images, out) + ["--progress", "1000"]
        run_guest(sysroot.command(args), sysroot.env(), timeout, log)
        return json.loads(out.read_text(encoding="utf-8"))


def count(sysroot: Sysroot, plugin: Path, model: Path, eval_npz: Path, images: int = 3,
          timeout: float = 1800, log: Log = log_stderr) -> InvokeCount:
    """Instructions of one ``invoke()`` of ``model`` on each of the first ``images`` eval images, after
    one warm-up invoke (LiteRT prepares XNNPACK lazily)."""
    if images < 1:
        raise BenchError("count: at least one image is needed")
    with tempfile.TemporaryDirectory(prefix="bitat-edge-litert-") as tmp:
        counts_file = Path(tmp) / "counts.txt"
        args = _measure_args(model, eval_npz, images, Path(tmp) / "result.json") + ["--mark-invokes", str(images)]
        qemu_args = plugin_args(plugin, counts_file, syscall=GETPPID[sysroot.arch])
        start = time.monotonic()
        run_guest(sysroot.command(args, qemu_args), sysroot.env(), timeout, log)
        counts = single_threaded(read_counts(counts_file), f"LiteRT on {model.name}")
    per_image, cost = marked_invokes(counts, images)
    log(f"  {model.name}: {per_image[0]:,} instructions per invoke (EMULATED, {time.monotonic() - start:.0f} s)")
    return InvokeCount(per_image, cost)
