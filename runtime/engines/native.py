"""``native``: the project's C engine (runtime/native) running the bundle's ``model.blob``.

The engine's ``bitat_bench`` program is built here for the device's architecture (static for ARM:
qemu-user, a Raspberry Pi, Android) and pushed with the blob and the eval images as raw tensors. It
writes every image's output (top-1 comes from them) and times inferences under the protocol on
physical targets. Under emulation nothing is timed: the QEMU plugin counts the instructions of the first
``request.count_images`` inferences, per op (EMULATED).
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np

from bitat_edge.bench_record import Accuracy, Instructions, Measurement, OpCount
from bitat_edge.layout import BundleDir
from runtime.bundle import ModelFile, load_eval, sha256_file
from runtime.devices import Device
from runtime.elf import elf_symbol, normalize_arch
from runtime.engines.base import Engine, Log, Stager, measured
from runtime.errors import BenchError
from runtime.native import build
from runtime.native.bench_output import DTYPES, MARKER, BenchOutput, BenchProgramError, parse, split_profile
from runtime.protocol import summarize_windows
from runtime.request import SessionRequest
from runtime.tflite_ops import LCE_CUSTOM_OPS

ARM_TARGETS = {"aarch64": "aarch64", "arm": "armv7"}


def build_target(arch: str) -> str | None:
    """The runtime/native build target for a device profile's ``arch``: the static ARM builds, or ``host``
    for this machine's own architecture; None when there is none."""
    if arch in ARM_TARGETS:
        return ARM_TARGETS[arch]
    return "host" if arch in ("native", normalize_arch(platform.machine())) else None


class NativeEngine(Engine):
    """Runs ``bitat_bench MODEL.blob [--images --logits] [--warmup --runs --windows]`` on the target."""

    name = "native"
    registered_ops = LCE_CUSTOM_OPS

    def __init__(self, program: Path) -> None:
        self.program = program

    @staticmethod
    def applies(request: SessionRequest) -> bool:
        """Whether ``auto`` should pick this engine: the bundle has model.blob and the engine builds here for
        the device."""
        target = build_target(request.device.arch)
        return target is not None and build.available(target) and BundleDir(request.bundle.root).blob.is_file()

    @classmethod
    def create(cls, request: SessionRequest) -> NativeEngine:
        arch, target = request.device.arch, build_target(request.device.arch)
        if target is None:
            raise BenchError(f"engine native: no build for arch '{arch}' (aarch64, arm or this machine's)")
        try:
            return cls(build.program("bench", target))
        except build.BuildError as exc:
            raise BenchError(f"engine native: {exc}") from None

    def measure(self, stager: Stager, request: SessionRequest, model: ModelFile, log: Log) -> Measurement:
        if model.kind != "lce":
            raise BenchError(f"engine native runs the LCE model only (model.blob), not {model.path.name}; "
                             "pass --model lce or --engine auto")
        bundle, transport = request.bundle, stager.transport
        blob = BundleDir(bundle.root).blob
        if not blob.is_file():
            raise BenchError(f"bundle {bundle.root}: {blob.name} is missing (the engine's compiled model); re-run the "
                             "convert stage (it writes model.blob when the C engine runs every op)")
        emulated = transport.capabilities.emulated
        argv = [stager.file(self.program, executable=True), stager.file(blob)]
        labels = None
        with tempfile.TemporaryDirectory(prefix="bitat-native-") as tmp:
            if request.accuracy:
                if bundle.eval_path is None:
                    raise BenchError(f"bundle {bundle.root}: eval.npz is missing, so accuracy cannot be measured; "
                                     "re-run the convert stage or pass --no-accuracy")
                images, labels = load_eval(bundle.eval_path, request.eval_samples)
                local_images = Path(tmp) / "images.bin"
                np.ascontiguousarray(images, dtype=np.float32).tofile(local_images)
                remote_logits = f"{transport.workdir()}/logits.bin"
                argv += ["--images", stager.file(local_images, name="eval_images.bin"), "--logits", remote_logits]
            p = request.protocol
            if not emulated:
                argv += ["--warmup", str(p.warmup), "--runs", str(p.runs), "--windows", str(p.windows)]
            counted = request.count_images
            log(f"{self.name}: {blob.name} on {transport.label}" + (
                f" (EMULATED: top-1 and the instructions of {counted} inferences, no timing)" if emulated
                else f", {p.windows} windows of {p.runs} runs"))
            counts = None
            if emulated:
                argv += ["--profile", str(counted)]
                done, counts = transport.run_counted(argv, timeout=request.timeout,
                                                     marker=elf_symbol(self.program, MARKER))
            else:
                done = transport.run(argv, timeout=request.timeout)
            if done.returncode != 0:
                lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("progress")]
                raise BenchError(f"bitat_bench on {transport.label} failed: "
                                 f"{lines[-1] if lines else f'exit status {done.returncode}'}")
            try:
                out = parse(done.stdout)
            except BenchProgramError as exc:
                raise BenchError(f"bitat_bench on {transport.label}: {exc}") from None
            accuracy, predictions = None, None
            if request.accuracy:
                local_logits = Path(tmp) / "logits.bin"
                transport.pull(remote_logits, str(local_logits))
                predictions = _top1(out, local_logits, len(images))
                if labels is not None:
                    correct = int((predictions == labels).sum())
                    accuracy = Accuracy(correct=correct, total=len(labels), top1=correct / len(labels))
        notes = ["EMULATED: no timing was run"] if emulated else []
        instructions = None
        if counts is not None:
            instructions = _instructions(out, counts.markers, request.device)
            if request.accuracy and len(images) < request.count_images:
                notes.append(f"only {len(images)} images: {len(images)} inferences counted")
        if request.accuracy and labels is None:
            notes.append("eval.npz has no labels ('y'): top-1 not measured")
        return measured(
            model,
            engine=self.name,
            engine_version=f"bitat_bench {out.kernel} kernels, blob format {out.blob_format}, "
                           f"sha256:{sha256_file(self.program)[:12]}",
            backend=f"runtime/native ({out.kernel})",
            latency=summarize_windows(out.windows) if out.windows else None,
            peak_memory_mb=(out.arena + blob.stat().st_size) / 2**20,
            peak_memory_source="the engine's arena plus the blob (no other allocation in the run path)",
            accuracy=accuracy,
            instructions=instructions,
            notes=notes,
            predictions=None if predictions is None else predictions.tolist(),
        )


def _instructions(out: BenchOutput, markers: tuple[int, ...], device: Device) -> Instructions:
    """Per-op and whole-inference counts (the mean of the counted inferences) and the binary convolutions'
    binary MACs per instruction."""
    inferences = len(markers) // (len(out.ops) + 3)
    profiled = split_profile(markers, len(out.ops), inferences)
    per_op = [round(sum(p.ops[i] for p in profiled) / len(profiled)) for i in range(len(out.ops))]
    binary = [(op.binary_macs, n) for op, n in zip(out.ops, per_op, strict=True) if op.binary_macs]
    return Instructions(
        per_inference=round(sum(p.total for p in profiled) / len(profiled)),
        cpu=device.qemu.cpu if device.qemu else device.cpu,
        method=f"QEMU TCG plugin: instructions between hits of bitat_bench's {MARKER}() (around each inference and "
               f"each op, the marking calls included); mean of {len(profiled)} inferences",
        per_op=[OpCount(index=op.index, op=op.name, instructions=n, binary_macs=op.binary_macs)
                for op, n in zip(out.ops, per_op, strict=True)],
        binary_macs_per_instruction=sum(m for m, _ in binary) / sum(n for _, n in binary) if binary else None,
    )


def _top1(out: BenchOutput, logits: Path, images: int) -> np.ndarray:
    """The class of each image from the raw outputs bitat_bench wrote."""
    spec = out.output
    values = np.fromfile(logits, dtype=DTYPES[spec.dtype])
    if values.size != images * int(np.prod(spec.dims[1:])):
        raise BenchError(f"bitat_bench wrote {values.size} output values for {images} images of {spec.dims}")
    return values.reshape(images, -1).argmax(axis=1)
