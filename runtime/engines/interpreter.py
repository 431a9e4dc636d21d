"""Interpreter engines: LCE's Python interpreter, or a TFLite interpreter, driven by ``remote_measure.py``.

The script runs through the transport (locally with this Python, or on an ssh target with the
device's Python), so the timed process holds only numpy and the interpreter, and its ``ru_maxrss``
is the peak memory of the measurement itself.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import ClassVar

from bitat_edge.bench_record import Accuracy, Measurement
from runtime import remote_measure
from runtime.bundle import ModelFile
from runtime.engines.base import Engine, Log, Stager, measured
from runtime.errors import BenchError
from runtime.protocol import summarize_windows
from runtime.request import SessionRequest
from runtime.tflite_ops import LCE_CUSTOM_OPS

SCRIPT = Path(remote_measure.__file__)


class InterpreterEngine(Engine):
    """Runs ``remote_measure.py --backend <backend>`` with the target's Python."""

    backend: ClassVar[str]

    def __init__(self, python: str | None) -> None:
        self.python = python  # None: the target offers no Python (refused in measure, naming the target)

    @classmethod
    def create(cls, request: SessionRequest) -> InterpreterEngine:
        return cls(request.device.interpreter_python)

    def measure(self, stager: Stager, request: SessionRequest, model: ModelFile, log: Log) -> Measurement:
        transport = stager.transport
        if self.python is None or transport.capabilities.python == "none":
            raise BenchError(
                f"engine {self.name}: needs Python on the target, which {transport.label} does not offer; "
                "use --engine benchmark-binary"
            )
        protocol, bundle = request.protocol, request.bundle
        argv = [
            self.python, stager.file(SCRIPT), "--model", stager.file(model.path), "--backend", self.backend,
            "--threads", str(protocol.threads), "--warmup", str(protocol.warmup), "--runs", str(protocol.runs),
            "--windows", str(protocol.windows),
        ]
        if request.accuracy:
            if bundle.eval_path is None:
                raise BenchError(
                    f"bundle {bundle.root}: eval.npz is missing, so accuracy cannot be measured; "
                    "re-run the convert stage or pass --no-accuracy"
                )
            argv += ["--eval", stager.file(bundle.eval_path)]
            if request.eval_samples:
                argv += ["--eval-samples", str(request.eval_samples)]
        else:
            shape = bundle.manifest.deploy.input_shape
            argv += ["--input-shape", ",".join(str(int(d)) for d in shape)]
        remote_out = f"{transport.workdir()}/result_{model.kind}_{self.backend}.json"
        argv += ["--out", remote_out]
        log(f"{self.name}: {model.path.name} on {transport.label}")
        done = transport.run(argv, timeout=request.timeout)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["(no error output)"]
            hint = ""
            if "No module named" in tail[0] or "not installed" in tail[0]:
                hint = "; install the interpreter package on the target or use --engine benchmark-binary"
            raise BenchError(f"{self.name} on {transport.label} failed for {model.path.name}: {tail[0]}{hint}")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "result.json"
            transport.pull(remote_out, str(local))
            raw = json.loads(local.read_text(encoding="utf-8"))
        notes = []
        if request.accuracy and raw["accuracy"] is None:
            notes.append("eval.npz has no labels ('y'): top-1 not measured")
        if self.backend == "tflite" and raw["backend"] == "larq_compute_engine":
            notes.append("no TFLite interpreter package on the target: LCE's interpreter ran this model")
        return measured(
            model,
            engine=self.name,
            engine_version=f"{raw['backend']} {raw['backend_version']} (python {raw['python']})",
            backend=raw["backend"],
            latency=summarize_windows(raw["timings_us"]),
            peak_memory_mb=raw["peak_rss_kb"] / 1024.0,
            peak_memory_source="ru_maxrss of the measuring process",
            accuracy=None if raw["accuracy"] is None else Accuracy(**raw["accuracy"]),
            notes=notes,
        )


class LceInterpreterEngine(InterpreterEngine):
    """``lce-interpreter``: LCE's interpreter (runs LCE's custom ops and plain TFLite models)."""

    name = "lce-interpreter"
    backend = "lce"
    registered_ops = LCE_CUSTOM_OPS


class TfliteInterpreterEngine(InterpreterEngine):
    """``tflite-interpreter``: TensorFlow's, tflite_runtime's or LiteRT's interpreter (LCE's as last fallback)."""

    name = "tflite-interpreter"
    backend = "tflite"


def interpreter_for(kind: str) -> type[InterpreterEngine]:
    """The interpreter engine ``auto`` picks for a model kind: LCE's for the LCE model, TFLite's otherwise."""
    return LceInterpreterEngine if kind == "lce" else TfliteInterpreterEngine
