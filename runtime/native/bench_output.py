"""Run the engine's ``bitat_bench`` program here (natively or under qemu-user) and read what it prints.

``bitat_bench`` (runtime/native/tools/bench.c) prints one ``key=value`` record per line; this module
turns them into a ``BenchOutput`` and reads the raw logits file back.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MARKER = "bitat_marker"
"""The function bitat_bench calls at every profiling point (``--profile``)."""
DTYPES = {"float32": np.float32, "int32": np.int32, "int8": np.int8}
EMULATORS = {"aarch64": ["qemu-aarch64", "-cpu", "cortex-a72"], "armv7": ["qemu-arm", "-cpu", "cortex-a7"]}
"""How each cross target runs here (static binaries: no sysroot needed)."""


class BenchProgramError(RuntimeError):
    """bitat_bench failed (its one-line error is the message) or printed something unreadable."""


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    dims: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.dims)) * np.dtype(DTYPES[self.dtype]).itemsize


@dataclass(frozen=True)
class OpLine:
    index: int
    name: str
    output: TensorSpec
    macs: int
    binary_macs: int


@dataclass
class BenchOutput:
    """Everything one bitat_bench run printed; ``logits`` when an eval wrote them."""

    kernel: str = ""
    blob_format: int = 0
    input: TensorSpec | None = None
    output: TensorSpec | None = None
    arena: int = 0
    ops: list[OpLine] = field(default_factory=list)
    images: int = 0
    windows: list[list[float]] = field(default_factory=list)  # per-run microseconds, one list per window
    logits: np.ndarray | None = None


_TENSOR = re.compile(r"^(float32|int32|int8)\[([0-9,]*)\]$")


def _tensor(text: str) -> TensorSpec:
    match = _TENSOR.match(text)
    if not match:
        raise BenchProgramError(f"bitat_bench printed an unreadable tensor '{text}'")
    return TensorSpec(match.group(1), tuple(int(d) for d in match.group(2).split(",") if d))


def parse(text: str) -> BenchOutput:
    """Parse bitat_bench's stdout."""
    out = BenchOutput()
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        fields = dict(item.split("=", 1) for item in rest.split() if "=" in item)
        try:
            if kind == "engine":
                out.kernel, out.blob_format = fields["kernel"], int(fields["blob_format"])
            elif kind == "model":
                out.input, out.output = _tensor(fields["input"]), _tensor(fields["output"])
                out.arena = int(fields["arena"])
            elif kind == "op":
                out.ops.append(OpLine(int(fields["index"]), fields["name"], _tensor(fields["output"]),
                                      int(fields["macs"]), int(fields["binary_macs"])))
            elif kind == "eval":
                out.images = int(fields["images"])
            elif kind == "window":
                out.windows.append([float(t) for t in fields["us"].split(",")])
        except (KeyError, ValueError) as exc:
            raise BenchProgramError(f"bitat_bench printed an unreadable line '{line}' ({exc})") from None
    if out.input is None:
        raise BenchProgramError("bitat_bench printed no model line")
    return out


def run_here(program: Path, blob: Path, images: np.ndarray | None = None, target: str = "host",
             extra: list[str] | None = None, timeout: float | None = None) -> BenchOutput:
    """Run ``program`` on ``blob`` on this machine (under qemu-user for aarch64/armv7); with ``images``
    (an array of model inputs, batch first) evaluate them and return their outputs as ``logits``."""
    prefix = EMULATORS.get(target, [])
    with tempfile.TemporaryDirectory(prefix="bitat-bench-") as tmp:
        argv = [*prefix, str(program), str(blob), *(extra or [])]
        if images is not None:
            images_path, logits_path = Path(tmp) / "images.bin", Path(tmp) / "logits.bin"
            np.ascontiguousarray(images).tofile(images_path)
            argv += ["--images", str(images_path), "--logits", str(logits_path)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("progress")]
            raise BenchProgramError(lines[-1] if lines else f"bitat_bench exited with status {done.returncode}")
        out = parse(done.stdout)
        if images is not None:
            spec = out.output
            out.logits = np.fromfile(logits_path, dtype=DTYPES[spec.dtype]).reshape(len(images), *spec.dims[1:])
    return out


@dataclass(frozen=True)
class ProfiledInference:
    """Instructions of one inference run with ``--profile``, split at the marker's hits."""

    ops: tuple[int, ...]  # each op, in order
    total: int  # the whole inference: entry (input copy), the ops, exit (output copy), the marking calls


def split_profile(markers: tuple[int, ...] | list[int], n_ops: int, inferences: int) -> list[ProfiledInference]:
    """The ``inferences`` profiled inferences from the instruction counts between consecutive marker hits
    (``markers[k]``: since hit k-1, or since the start for k = 0). Each inference hits ops + 3 times: before
    it, before each op, after the last op, after it; so its counts are (what came before), entry, the ops, exit."""
    per = n_ops + 3
    if len(markers) != inferences * per:
        raise BenchProgramError(f"expected {inferences * per} marker hits for {inferences} profiled inferences of "
                                f"{n_ops} ops, got {len(markers)}")
    out = []
    for k in range(inferences):
        deltas = markers[k * per + 1:(k + 1) * per]  # entry, the ops, exit
        out.append(ProfiledInference(tuple(deltas[1:-1]), sum(deltas)))
    return out
