"""Interpreter engines: LCE's Python interpreter, or a TFLite interpreter, driven by ``remote_measure.py``.

The script runs through the transport (locally with this Python, or on an ssh target with the
device's Python), so the timed process holds only numpy and the interpreter, and its ``ru_maxrss``
is the peak memory of the measurement itself. On an emulated target (QEMU with the emulation
sysroot's Python) there is no timing: top-1 comes from one uncounted run, and the cost is the
EMULATED instruction count of ``invoke()`` on a few images, counted by the QEMU plugin.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from bitat_edge.bench_record import Accuracy, Instructions, Measurement
from runtime import remote_measure
from runtime.bundle import ModelFile
from runtime.emulation.counts import InsnCounts, marked_invokes, single_threaded
from runtime.emulation.sysroot import NO_LITERT
from runtime.engines.base import Engine, Log, Stager, measured
from runtime.errors import BenchError
from runtime.protocol import Protocol, summarize_windows
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
        if self.python is None and request.device.arch in NO_LITERT and transport.capabilities.python == "sysroot":
            raise BenchError(f"engine {self.name}: {NO_LITERT[request.device.arch]}; use a binary engine")
        if self.python is None or transport.capabilities.python == "none":
            raise BenchError(
                f"engine {self.name}: needs Python on the target, which {transport.label} does not offer; "
                "use --engine benchmark-binary"
            )
        if transport.capabilities.emulated:
            return self._measure_emulated(stager, request, model, log)
        protocol = request.protocol
        log(f"{self.name}: {model.path.name} on {transport.label}")
        raw, _ = self._run(stager, request, model, self._protocol_args(protocol) + self._input_args(stager, request))
        return self._measurement(raw, request, model, latency=summarize_windows(raw["timings_us"]),
                                 peak_memory_mb=raw["peak_rss_kb"] / 1024.0,
                                 peak_memory_source="ru_maxrss of the measuring process")

    def _measure_emulated(self, stager: Stager, request: SessionRequest, model: ModelFile, log: Log) -> Measurement:
        """Top-1 without the counter (full emulation speed), then ``request.count_images`` marked invokes counted."""
        transport, bundle = stager.transport, request.bundle
        once = self._protocol_args(Protocol(warmup=1, runs=1, windows=1, threads=request.protocol.threads))
        raw = None
        if request.accuracy:
            log(f"{self.name}: {model.path.name} on {transport.label}: top-1 (EMULATED)")
            raw, _ = self._run(stager, request, model, once + self._input_args(stager, request) + ["--progress", "250"])
        images = request.count_images
        if bundle.eval_path is not None:
            counted = once + ["--eval", stager.file(bundle.eval_path), "--eval-samples", str(images)]
        else:
            counted = once + self._input_args(stager, replace(request, accuracy=False))
        log(f"{self.name}: {model.path.name}: counting the instructions of {images} invokes (EMULATED)")
        counted_raw, counts = self._run(stager, request, model, counted + ["--mark-invokes", str(images)], count=True)
        per_image, marking = marked_invokes(single_threaded(counts, model.path.name), images)
        device = request.device
        instructions = Instructions(
            per_inference=round(sum(per_image) / len(per_image)), cpu=device.qemu.cpu if device.qemu else device.cpu,
            method=f"QEMU TCG plugin: Interpreter.invoke() between two getppid() markers, less an empty marked "
                   f"region ({marking} instructions); mean of {images} eval images after one warm-up invoke")
        notes = ["EMULATED: instructions counted under QEMU; no timing was run"]
        if len(set(per_image)) > 1:
            notes.append(f"instructions per image differ (data-dependent code): {', '.join(map(str, per_image))}")
        return self._measurement(raw or counted_raw, request, model, instructions=instructions, notes=notes)

    @staticmethod
    def _protocol_args(protocol: Protocol) -> list[str]:
        return ["--threads", str(protocol.threads), "--warmup", str(protocol.warmup), "--runs", str(protocol.runs),
                "--windows", str(protocol.windows)]

    @staticmethod
    def _input_args(stager: Stager, request: SessionRequest) -> list[str]:
        """Eval images for top-1 (``--eval``), or the model's input shape for noise without accuracy."""
        bundle = request.bundle
        if not request.accuracy:
            return ["--input-shape", ",".join(str(int(d)) for d in bundle.manifest.deploy.input_shape)]
        if bundle.eval_path is None:
            raise BenchError(
                f"bundle {bundle.root}: eval.npz is missing, so accuracy cannot be measured; "
                "re-run the convert stage or pass --no-accuracy"
            )
        samples = ["--eval-samples", str(request.eval_samples)] if request.eval_samples else []
        return ["--eval", stager.file(bundle.eval_path), *samples]

    def _run(self, stager: Stager, request: SessionRequest, model: ModelFile, args: list[str],
             count: bool = False) -> tuple[dict, InsnCounts | None]:
        """Run the script with ``args``: its result, and the instruction counts if ``count`` (else None)."""
        transport = stager.transport
        remote_out = f"{transport.workdir()}/result_{model.kind}_{self.backend}.json"
        argv = [self.python, stager.file(SCRIPT), "--model", stager.file(model.path), "--backend", self.backend,
                *args, "--out", remote_out]
        if count:
            done, counts = transport.run_counted(argv, timeout=request.timeout, marker="getppid")
        else:
            done, counts = transport.run(argv, timeout=request.timeout), None
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
        return raw, counts

    def _measurement(self, raw: dict, request: SessionRequest, model: ModelFile, notes: list[str] | None = None,
                     **fields: Any) -> Measurement:
        notes = list(notes or [])
        if request.accuracy and raw["accuracy"] is None:
            notes.append("eval.npz has no labels ('y'): top-1 not measured")
        if self.backend == "tflite" and raw["backend"] == "larq_compute_engine":
            notes.append("no TFLite interpreter package on the target: LCE's interpreter ran this model")
        return measured(
            model,
            engine=self.name,
            engine_version=f"{raw['backend']} {raw['backend_version']} (python {raw['python']})",
            backend=raw["backend"],
            accuracy=None if raw["accuracy"] is None or not request.accuracy else Accuracy(**raw["accuracy"]),
            predictions=raw.get("predictions") if request.accuracy else None,
            delegate=raw["delegate"],
            notes=notes,
            **fields,
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
