"""The ``lce_benchmark_model`` binary: device latency, peak memory and per-op profiles (no accuracy)."""

from __future__ import annotations

import os
from pathlib import Path

from bitat_edge.bench_record import Measurement
from runtime.bundle import ModelFile, sha256_file
from runtime.elf import read_elf
from runtime.engines.base import Engine, Log, Stager, measured
from runtime.engines.benchmark_output import BenchmarkOutput, parse, per_layer
from runtime.errors import BenchError
from runtime.protocol import summarize_window_aggregates
from runtime.request import SessionRequest
from runtime.tflite_ops import LCE_CUSTOM_OPS

BIN_DIR = Path(__file__).resolve().parents[1] / "bin"


def find_binary(suffix: str, option: str | None = None, inventory_path: str | None = None,
                docker_target: str = "") -> Path:
    """--binary, else $LCE_BENCHMARK_MODEL, else the inventory's binary_path, else runtime/bin/lce_benchmark_model_<suffix>."""
    for source, value in (("--binary", option), ("LCE_BENCHMARK_MODEL", os.environ.get("LCE_BENCHMARK_MODEL")),
                          ("inventory binary_path", inventory_path)):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise BenchError(f"{source} {path}: no such file; pass the path of an lce_benchmark_model binary")
            return path
    if not suffix:
        raise BenchError("no lce_benchmark_model is configured for this device profile; pass --binary PATH "
                         "or set LCE_BENCHMARK_MODEL")
    default = BIN_DIR / f"lce_benchmark_model_{suffix}"
    if not default.is_file():
        make = f"`make docker-lce-{docker_target}` (needs Docker and internet)" if docker_target else "the docker/ images"
        raise BenchError(
            f"no lce_benchmark_model binary found (looked for {default}); build it with {make}, "
            "or pass --binary PATH / set LCE_BENCHMARK_MODEL"
        )
    return default


class BenchmarkBinaryEngine(Engine):
    """Runs the binary once per window (fresh process, its own warm-up), plus one run for memory/profile."""

    name = "benchmark-binary"
    registered_ops = LCE_CUSTOM_OPS

    def __init__(self, binary: Path, target_arch: str) -> None:
        self.binary, self.target_arch = binary, target_arch
        info = read_elf(binary)
        if info.machine != target_arch:
            raise BenchError(
                f"{binary}: built for {info.machine}, but the target is {target_arch} (wrong architecture); "
                f"use the binary for {target_arch} (runtime/bin/lce_benchmark_model_<arch>)"
            )

    @classmethod
    def create(cls, request: SessionRequest) -> BenchmarkBinaryEngine:
        device = request.device
        return cls(find_binary(device.binary, request.binary, device.binary_path, device.docker_target), device.arch)

    def _run(self, stager: Stager, request: SessionRequest, model: ModelFile, flags: list[str],
             log: Log) -> BenchmarkOutput:
        transport = stager.transport
        argv = [stager.file(self.binary, executable=True), f"--graph={stager.file(model.path)}",
                f"--num_threads={request.protocol.threads}", *flags]
        done = transport.run(argv, timeout=request.timeout)
        output = parse(done.output)
        if done.returncode != 0 or output.failed or output.inference is None or output.inference.count == 0:
            lines = output.errors[-3:] or done.output.strip().splitlines()[-1:] or ["no output"]
            raise BenchError(
                f"lce_benchmark_model failed on {transport.label} for {model.path.name} "
                f"(exit {done.returncode}): {'; '.join(lines)}"
            )
        log(f"  window: {done.seconds:.1f} s, {output.inference.count} runs")
        return output

    def measure(self, stager: Stager, request: SessionRequest, model: ModelFile, log: Log) -> Measurement:
        p = request.protocol
        timed = [f"--num_runs={p.runs}", f"--warmup_runs={p.warmup}", "--min_secs=0", "--warmup_min_secs=0",
                 "--max_secs=100000"]
        log(f"{self.name}: {model.path.name} on {stager.transport.label}, {p.windows} windows of {p.runs} runs")
        outputs = [self._run(stager, request, model, timed, log) for _ in range(p.windows)]
        windows = [o.inference.as_window() for o in outputs]
        extra_flags = ["--num_runs=10", "--warmup_runs=1", "--min_secs=0", "--warmup_min_secs=0",
                       "--report_peak_memory_footprint=true"]
        if request.profile:
            extra_flags.append("--enable_op_profiling=true")
        extra = self._run(stager, request, model, extra_flags, log)
        notes = []
        if any(w["count"] != p.runs for w in windows):
            notes.append(f"the binary ran {[w['count'] for w in windows]} timed runs per window (asked {p.runs})")
        if request.accuracy:
            notes.append("the benchmark binary feeds random inputs: accuracy comes from an interpreter engine")
        peak, source = extra.peak_memory_mb, "lce_benchmark_model periodic peak-memory monitor"
        if peak is None:
            peak, source = extra.memory_overall_mb, "lce_benchmark_model memory footprint delta (overall)"
        return measured(
            model,
            engine=self.name,
            engine_version=f"lce_benchmark_model sha256:{sha256_file(self.binary)[:12]}",
            backend="lce_benchmark_model",
            latency=summarize_window_aggregates(windows),
            peak_memory_mb=peak,
            peak_memory_source=source if peak is not None else "",
            profile=per_layer(extra) if request.profile else None,
            notes=notes,
        )
