"""Run a model on an emulated Cortex-M board: accuracy inputs, logits, exact instruction counts per op.

Builds the evaluation firmware (firmware/eval.c + the model sources of runtime/mcu/project.py) for
the board, feeds it images through semihosting under ``qemu-system-arm`` with the counting plugin,
and reads back logits, per-op instruction counts and the measured stack peak. Instruction counts
are EMULATED: deterministic counts of executed instructions, not time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitat_edge.atomic import write_bytes
from runtime.errors import BenchError
from runtime.mcu import footprint, project, qemu, toolchain
from runtime.mcu.boards import Board

EVAL_SOURCE = project.FIRMWARE_DIR / "eval.c"


@dataclass(frozen=True)
class OpCost:
    """One op of the model: its name, MACs and mean instructions per inference (hook cost removed)."""

    index: int
    name: str
    macs: int
    binary_macs: int
    instructions: float


@dataclass(frozen=True)
class Evaluation:
    """What one run of the evaluation firmware measured."""

    board: Board
    logits: np.ndarray  # [images, classes] float32
    ops: list[OpCost]
    kernel: str
    stack_peak: int
    footprint: footprint.Footprint

    @property
    def instructions_per_inference(self) -> float:
        return sum(op.instructions for op in self.ops)

    @property
    def binary_macs_per_instruction(self) -> float | None:
        """Binary MACs per instruction over the ops that have binary MACs (the binary convolutions)."""
        ops = [op for op in self.ops if op.binary_macs]
        instructions = sum(op.instructions for op in ops)
        return sum(op.binary_macs for op in ops) / instructions if instructions else None


def build_firmware(board: Board, blob: bytes, config: project.ModelConfig, out_dir: Path,
                   stack_bytes: int) -> toolchain.Firmware:
    """The evaluation firmware of ``blob`` for ``board`` in ``out_dir``."""
    project.check_fit(board, config)
    model = project.write_model_sources(blob, config, out_dir / "model")
    return toolchain.build(
        board,
        {"engine": project.engine_files(), "model": [*model, *project.API_SOURCES], "app": [EVAL_SOURCE]},
        out_dir,
        include_dirs=(*project.ENGINE_INCLUDES, project.FIRMWARE_DIR, out_dir / "model"),
        stack_bytes=stack_bytes,
    )


def _read_report(path: Path) -> tuple[list[tuple[int, str, int, int]], dict[str, str]]:
    ops, facts = [], {}
    for line in path.read_text(encoding="ascii").splitlines():
        fields = line.split()
        if fields and fields[0] == "op" and len(fields) == 5:
            ops.append((int(fields[1]), fields[2], int(fields[3]), int(fields[4])))
        elif len(fields) == 2:
            facts[fields[0]] = fields[1]
    return ops, facts


def evaluate(board: Board, blob: bytes, config: project.ModelConfig, images: np.ndarray, work_dir: Path,
             stack_bytes: int = 8192, timeout: float = 3600.0) -> Evaluation:
    """Run ``images`` ([N, ...] float32, the model's input layout) on ``board``; see the module docstring."""
    images = np.ascontiguousarray(images, dtype="<f4")
    if images.ndim < 2 or images[0].size != config.input_floats:
        raise BenchError(f"the images have shape {list(images.shape)}; the model takes {config.input_floats} floats each")
    firmware = build_firmware(board, blob, config, work_dir / "build", stack_bytes)
    run_dir = work_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_bytes(run_dir / "input.bin", images.tobytes())
    run = qemu.run(firmware, run_dir, args=str(len(images)), count=True, timeout=timeout)
    if run.returncode != 0:
        detail = run.console.strip().splitlines()[-1] if run.console.strip() else f"exit status {run.returncode}"
        raise BenchError(f"the firmware failed on {board.name}: {detail}")
    ops, facts = _read_report(run_dir / "report.txt")
    logits = np.fromfile(run_dir / "logits.bin", dtype="<f4")
    if logits.size != len(images) * config.classes or int(facts.get("images", -1)) != len(images):
        raise BenchError(f"{board.name}: the firmware wrote {logits.size} logits for {len(images)} images")
    return Evaluation(board, logits.reshape(len(images), config.classes),
                      _op_costs(ops, run.counts.markers, len(images)), facts.get("kernel", "?"),
                      int(facts["stack_peak_bytes"]), footprint.read_map(firmware.map))


def _op_costs(ops: list[tuple[int, str, int, int]], markers: tuple[int, ...], images: int) -> list[OpCost]:
    """Per-op mean instructions: markers are [start, hook cost, then per image: harness, op 0..n-1]."""
    per_image = len(ops) + 1
    if len(markers) != 2 + images * per_image:
        raise BenchError(f"expected {2 + images * per_image} instruction markers, got {len(markers)}")
    hook = markers[1]
    counts = np.array(markers[2:], dtype=np.int64).reshape(images, per_image)[:, 1:] - hook
    means = counts.mean(axis=0)
    return [OpCost(i, name, macs, bmacs, float(means[k])) for k, (i, name, macs, bmacs) in enumerate(ops)]
