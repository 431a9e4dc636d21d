"""Interpreter engines: LCE's Python interpreter, or a TFLite interpreter, driven by ``remote_measure.py``.

The script runs through the transport (locally with this Python, or on an ssh target with the
device's Python), so the timed process holds only numpy and the interpreter, and its ``ru_maxrss``
is the peak memory of the measurement itself.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from runtime import remote_measure
from runtime.engines.base import Engine, EngineResult, Job, Log, Stager
from runtime.errors import BenchError
from runtime.protocol import summarize_windows
from runtime.tflite_ops import LCE_CUSTOM_OPS

SCRIPT = Path(remote_measure.__file__)


class InterpreterEngine(Engine):
    """``lce-interpreter`` (backend lce) or ``tflite-interpreter`` (backend tflite, LCE as last fallback)."""

    def __init__(self, backend: str, python: str | None = None) -> None:
        self.backend = backend
        self.name = "lce-interpreter" if backend == "lce" else "tflite-interpreter"
        self.registered_ops = LCE_CUSTOM_OPS if backend == "lce" else frozenset()
        self.python = python or sys.executable

    def measure(self, stager: Stager, job: Job, log: Log) -> EngineResult:
        transport = stager.transport
        if transport.kind in ("qemu", "adb"):
            raise BenchError(
                f"engine {self.name}: needs Python on the target, which {transport.label} does not offer; "
                "use --engine benchmark-binary"
            )
        protocol = job.protocol
        argv = [
            self.python, stager.file(SCRIPT), "--model", stager.file(job.model.path), "--backend", self.backend,
            "--threads", str(protocol.threads), "--warmup", str(protocol.warmup), "--runs", str(protocol.runs),
            "--windows", str(protocol.windows),
        ]
        if job.accuracy:
            if job.bundle.eval_path is None:
                raise BenchError(
                    f"bundle {job.bundle.root}: eval.npz is missing, so accuracy cannot be measured; "
                    "re-run the convert stage or pass --no-accuracy"
                )
            argv += ["--eval", stager.file(job.bundle.eval_path)]
            if job.eval_samples:
                argv += ["--eval-samples", str(job.eval_samples)]
        else:
            shape = job.bundle.manifest.deploy.input_shape
            argv += ["--input-shape", ",".join(str(int(d)) for d in shape)]
        remote_out = f"{transport.workdir()}/result_{job.model.kind}_{self.backend}.json"
        argv += ["--out", remote_out]
        log(f"{self.name}: {job.model.path.name} on {transport.label}")
        done = transport.run(argv, timeout=job.timeout)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["(no error output)"]
            hint = ""
            if "No module named" in tail[0] or "not installed" in tail[0]:
                hint = "; install the interpreter package on the target or use --engine benchmark-binary"
            raise BenchError(f"{self.name} on {transport.label} failed for {job.model.path.name}: {tail[0]}{hint}")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "result.json"
            transport.pull(remote_out, str(local))
            raw = json.loads(local.read_text(encoding="utf-8"))
        notes = []
        if job.accuracy and raw["accuracy"] is None:
            notes.append("eval.npz has no labels ('y'): top-1 not measured")
        if self.backend == "tflite" and raw["backend"] == "larq_compute_engine":
            notes.append("no TFLite interpreter package on the target: LCE's interpreter ran this model")
        return EngineResult(
            engine=self.name,
            engine_version=f"{raw['backend']} {raw['backend_version']} (python {raw['python']})",
            backend=raw["backend"],
            latency=summarize_windows(raw["timings_us"]),
            peak_memory_mb=raw["peak_rss_kb"] / 1024.0,
            peak_memory_source="ru_maxrss of the measuring process",
            accuracy=raw["accuracy"],
            notes=notes,
        )
