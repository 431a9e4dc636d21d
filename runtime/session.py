"""One bench session: pick engines, measure each model under the protocol, write results and plots."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from bitat_edge import __version__
from bitat_edge.atomic import write_text
from bitat_edge.bench_record import BenchSession, DeviceInfo, Harness, Measurement, ProtocolInfo
from bitat_edge.manifest import INTEGER_FORMS
from runtime import plots
from runtime.engines import ENGINES
from runtime.engines.base import Engine, Stager
from runtime.engines.benchmark_binary import BenchmarkBinaryEngine
from runtime.engines.interpreter import TfliteInterpreterEngine, interpreter_for
from runtime.engines.mcu import McuEngine
from runtime.engines.native import NativeEngine
from runtime.errors import BenchError
from runtime.request import SessionRequest
from runtime.results import (
    AGGREGATES,
    SessionLog,
    check_results_root,
    read_csv,
    session_dir_for,
    write_session,
)
from runtime.tflite_ops import custom_ops


def choose_engine(kind: str, request: SessionRequest) -> Engine:
    """The engine for model ``kind``; 'auto' uses what the target offers: a microcontroller board (the MCU
    firmware), this machine's Python (interpreters), no Python (the benchmark binary), an emulation sysroot's
    Python (LiteRT for the TFLite baselines, the benchmark binary for the LCE model), or a device's Python as the
    fallback when it has no binary.
    On devices the LCE model runs on the native C engine when the bundle has its model.blob and the engine
    builds for the device's architecture."""
    if request.engine != "auto":
        return ENGINES[request.engine].create(request)
    device = request.device
    if device.board:
        return McuEngine.create(request)
    python = device.capabilities.python
    if python == "harness":
        return interpreter_for(kind).create(request)
    if kind == "lce" and NativeEngine.applies(request):
        return NativeEngine.create(request)
    if python == "none" or (python == "sysroot" and kind == "lce"):
        return BenchmarkBinaryEngine.create(request)
    if python == "sysroot":  # the emulation sysroot has LiteRT for TFLite models, not LCE
        return TfliteInterpreterEngine.create(request)
    try:
        return BenchmarkBinaryEngine.create(request)
    except BenchError as exc:
        if device.python:
            return interpreter_for(kind).create(request)
        raise BenchError(f"{exc}; or set 'python:' for device '{device.name}' in your inventory to measure with "
                         "the device's Python interpreter") from None


def check_coverage(model_path: Path, engine: Engine) -> None:
    """Refuse a model whose custom ops the engine cannot run, before pushing anything."""
    missing = sorted(custom_ops(model_path) - engine.registered_ops)
    if missing:
        raise BenchError(
            f"{model_path.name}: uses custom ops {', '.join(missing)} that {engine.name} does not register; "
            "use --engine lce-interpreter or --engine benchmark-binary for LCE models"
        )


def _with_reference(request: SessionRequest, measurement: Measurement) -> Measurement:
    """Add the convert stage's top-1 for the same model (only when the whole eval set was used)."""
    reference = request.bundle.reference_top1(measurement.model) if request.eval_samples is None else None
    matches = None
    if reference is not None and measurement.accuracy is not None:
        matches = abs(round(measurement.accuracy.top1, 6) - reference) < 1e-9  # convert rounds to 6 decimals
    return measurement.model_copy(update={"reference_top1": reference, "matches_reference": matches})


def ratios(measurements: list[Measurement]) -> dict[str, float]:
    """Typical-latency ratios of the baselines over the LCE model (e.g. {'fp32/lce': 3.1}), when both figures
    are the same statistic."""
    latency = {m.model: m.latency for m in measurements if m.latency is not None}
    lce = latency.get("lce")
    if lce is None or lce.typical_ms <= 0:
        return {}
    return {f"{kind}/lce": latency[kind].typical_ms / lce.typical_ms for kind in ("fp32", "int8")
            if kind in latency and latency[kind].typical_is == lce.typical_is}


def _summary(measurement: Measurement) -> str:
    """One log line: the typical latency (labelled), its IQR when there is one, and top-1."""
    parts = []
    if measurement.latency is not None:
        lat = measurement.latency
        iqr = f" (IQR {lat.overall.iqr:.3f})" if lat.overall.iqr is not None else ""
        parts.append(f"{lat.typical_is} {lat.typical_ms:.3f} ms{iqr}")
    if measurement.instructions is not None:
        parts.append(f"{measurement.instructions.per_inference} instructions per inference (EMULATED)")
    if measurement.accuracy is not None:
        parts.append(f"top-1 {measurement.accuracy.top1:.4f}")
    return f"{measurement.model}: {', '.join(parts)} [{measurement.engine}]"


def run_session(request: SessionRequest, echo=None) -> tuple[Path, BenchSession]:
    """Measure ``request.kinds`` of its bundle on its device; return the session directory and its record."""
    request.protocol.check()
    device, bundle, bench_root = request.device, request.bundle, request.results_root
    check_results_root(bench_root)
    now = datetime.now(timezone.utc)
    session_dir = session_dir_for(bench_root, device.name, now)
    log = SessionLog(echo)
    transport = device.open_transport()
    emulated = transport.capabilities.emulated
    try:
        log(f"device {device.name} via {transport.label}{' (EMULATED)' if emulated else ''}")
        facts = transport.facts()
        log(f"system: {facts.machine}, {facts.cpu}, kernel {facts.kernel}, glibc {facts.glibc or '-'}")
        stager = Stager(transport)
        measurements = []
        for kind in request.kinds:
            engine = choose_engine(kind, request)
            model = bundle.models[kind]
            check_coverage(model.path, engine)
            measurement = _with_reference(request, engine.measure(stager, request, model, log))
            if request.profile and measurement.profile is None:
                measurement.notes.append(f"{engine.name} has no per-layer profiler; use --engine benchmark-binary")
            if kind == "int8" and bundle.int8_form != "int8":
                measurement.notes.append(f"{model.path.name} holds the {bundle.int8_form} form "
                                         f"({INTEGER_FORMS[bundle.int8_form]})")
            log(_summary(measurement))
            measurements.append(measurement)
        session = BenchSession(
            date=now.isoformat(timespec="seconds"),
            device=DeviceInfo(name=device.name, description=device.description, arch=device.arch, cpu=device.cpu,
                              transport=transport.label),
            emulated=emulated,
            facts=facts,
            protocol=ProtocolInfo(**asdict(request.protocol)),
            bundle=os.path.relpath(bundle.root, session_dir),  # paths in a record are relative to its directory
            model_name=bundle.manifest.model_name,
            harness=Harness(bitat_edge=__version__, python=platform.python_version(),
                            command=[Path(sys.argv[0]).name, *sys.argv[1:]]),
            measurements=measurements,
            ratios=ratios(measurements),
        )
    except BenchError as exc:
        log(f"error: {exc}")
        write_text(session_dir / "log.txt", log.text())
        raise
    finally:
        transport.close()
    write_session(session_dir, bench_root, session, log)
    csv_path, _, latency_plot, instructions_plot = (bench_root / name for name in AGGREGATES)
    rows = read_csv(csv_path)
    plots.accuracy_vs_latency(rows, latency_plot)
    plots.accuracy_vs_instructions(
        [(f"{r['device']} · {r['engine']}", r["model"], int(r["instructions_per_inference"]), float(r["top1"]))
         for r in rows if r.get("instructions_per_inference") and r.get("top1")],
        instructions_plot, "EMULATED: top-1 vs instructions per inference")
    for m in measurements:
        if m.profile:
            plots.per_layer_time(m.profile, session_dir / f"per_layer_{m.model}.png",
                                 f"{device.name} · {m.model} · {m.engine}")
    return session_dir, session
