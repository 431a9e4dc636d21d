"""One bench session: pick engines, measure each model under the protocol, write results and plots."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bitat_edge import __version__
from runtime import plots
from runtime.bundle import Bundle
from runtime.devices import Device
from runtime.engines.base import Engine, Job, Stager
from runtime.engines.benchmark_binary import BenchmarkBinaryEngine, find_binary
from runtime.engines.interpreter import InterpreterEngine
from runtime.errors import BenchError
from runtime.protocol import Protocol
from runtime.results import SessionLog, read_csv, utc_stamp, write_session
from runtime.tflite_ops import custom_ops
from runtime.transports.base import Transport

ENGINES = ("auto", "lce-interpreter", "tflite-interpreter", "benchmark-binary")


def choose_engine(kind: str, engine: str, device: Device, transport: Transport, binary: str | None) -> Engine:
    """The engine for model ``kind`` ('lce', 'fp32', 'int8') on ``device``; 'auto' prefers what the target offers."""
    python = sys.executable if transport.kind == "local" else (device.python or "python3")
    if engine == "lce-interpreter":
        return InterpreterEngine("lce", python)
    if engine == "tflite-interpreter":
        return InterpreterEngine("tflite", python)
    if engine == "benchmark-binary" or transport.kind in ("qemu", "adb"):
        path = find_binary(device.binary, binary, device.binary_path, device.docker_target)
        return BenchmarkBinaryEngine(path, device.arch)
    if transport.kind == "local":
        return InterpreterEngine("lce" if kind == "lce" else "tflite", python)
    try:
        return BenchmarkBinaryEngine(find_binary(device.binary, binary, device.binary_path, device.docker_target),
                                     device.arch)
    except BenchError as exc:
        if device.python:
            return InterpreterEngine("lce" if kind == "lce" else "tflite", python)
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


def _measurement(device: Device, bundle: Bundle, job: Job, result, emulated: bool) -> dict[str, Any]:
    accuracy = result.accuracy
    reference = bundle.reference_top1(job.model.kind) if job.eval_samples is None else None
    matches = None
    if reference is not None and accuracy is not None:
        matches = abs(round(accuracy["top1"], 6) - reference) < 1e-9  # convert rounds to 6 decimals
    return {
        "model": job.model.kind, "file": job.model.path.name, "model_sha256": job.model.sha256,
        "model_bytes": job.model.size_bytes, "device": device.name, "emulated": emulated,
        "engine": result.engine, "engine_version": result.engine_version, "backend": result.backend,
        "threads": job.protocol.threads, "warmup": job.protocol.warmup, "runs": job.protocol.runs,
        "windows": job.protocol.windows, "latency": result.latency, "peak_memory_mb": result.peak_memory_mb,
        "peak_memory_source": result.peak_memory_source, "accuracy": accuracy, "reference_top1": reference,
        "matches_reference": matches, "profile": result.profile, "notes": result.notes,
    }


def ratios(measurements: list[dict[str, Any]]) -> dict[str, float]:
    """Median-latency ratios of the baselines over the LCE model (e.g. {'fp32/lce': 3.1})."""
    medians = {m["model"]: m["latency"]["overall"]["median"] for m in measurements}
    if "lce" not in medians or medians["lce"] <= 0:
        return {}
    return {f"{kind}/lce": medians[kind] / medians["lce"] for kind in ("fp32", "int8") if kind in medians}


def run_session(device: Device, bundle: Bundle, kinds: tuple[str, ...], engine: str, protocol: Protocol,
                accuracy: bool, eval_samples: int | None, profile: bool, binary: str | None,
                bench_root: Path | None, timeout: float, echo=None) -> tuple[Path, dict[str, Any]]:
    """Measure ``kinds`` of ``bundle`` on ``device``; return the session directory and its results."""
    protocol.check()
    bench_root = bench_root or bundle.run_dir / "bench"
    now = datetime.now(timezone.utc)
    session_dir = bench_root / f"{device.name}-{utc_stamp(now)}"
    log = SessionLog(echo)
    transport = device.open_transport()
    try:
        log(f"device {device.name} via {transport.label}{' (EMULATED)' if transport.emulated else ''}")
        facts = transport.facts()
        log(f"system: {facts.machine}, {facts.cpu}, kernel {facts.kernel}, glibc {facts.glibc or '-'}")
        stager = Stager(transport)
        measurements = []
        for kind in kinds:
            eng = choose_engine(kind, engine, device, transport, binary)
            check_coverage(bundle.models[kind].path, eng)
            job = Job(bundle, bundle.models[kind], protocol, accuracy, eval_samples, profile, timeout)
            result = eng.measure(stager, job, log)
            if profile and result.profile is None:
                result.notes.append(f"{eng.name} has no per-layer profiler; use --engine benchmark-binary")
            m = _measurement(device, bundle, job, result, transport.emulated)
            top1 = f", top-1 {m['accuracy']['top1']:.4f}" if m["accuracy"] else ""
            log(f"{kind}: median {m['latency']['overall']['median']:.3f} ms "
                f"(IQR {m['latency']['overall'].get('iqr', float('nan')):.3f}){top1} [{result.engine}]")
            measurements.append(m)
        session = {
            "schema": "bitat-edge/bench/1",
            "date": now.isoformat(timespec="seconds"),
            "device": {"name": device.name, "description": device.description, "arch": device.arch,
                       "cpu": device.cpu, "transport": transport.label},
            "emulated": transport.emulated,
            "facts": asdict(facts),
            "protocol": asdict(protocol),
            "bundle": str(bundle.root),
            "model_name": bundle.manifest.model_name,
            "harness": {"bitat_edge": __version__, "python": platform.python_version(), "command": sys.argv},
            "measurements": measurements,
            "ratios": ratios(measurements),
        }
    except BenchError as exc:
        log(f"error: {exc}")
        from bitat_edge.atomic import write_text

        write_text(session_dir / "log.txt", log.text())
        raise
    finally:
        transport.close()
    write_session(session_dir, bench_root, session, log)
    plots.accuracy_vs_latency(read_csv(bench_root / "results.csv"), bench_root / "accuracy_vs_latency.png")
    for m in measurements:
        if m["profile"]:
            plots.per_layer_time(m["profile"], session_dir / f"per_layer_{m['model']}.png",
                                 f"{device.name} · {m['model']} · {m['engine']}")
    return session_dir, session
