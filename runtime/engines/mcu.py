"""``bitat-mcu``: the engine as firmware on an emulated Cortex-M board (runtime/mcu).

Builds the evaluation firmware of the bundle's ``model_mcu.blob`` for the device's board, runs the eval
images through it under ``qemu-system-arm``, and reports top-1, agreement with the host LCE
interpreter on the same images, EMULATED instructions per inference (per op too; exact counts, not
time) and the flash/SRAM footprint from the linker map plus the measured stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bitat_edge.bench_record import Accuracy, Footprint, Instructions, Measurement, OpCount
from bitat_edge.layout import BundleDir
from runtime import remote_measure
from runtime.bundle import ModelFile, load_eval
from runtime.engines.base import Engine, Log, Stager, measured
from runtime.errors import BenchError
from runtime.mcu import project, toolchain
from runtime.mcu.boards import Board, get_board
from runtime.mcu.evaluate import Evaluation, evaluate
from runtime.request import SessionRequest
from runtime.tflite_ops import LCE_CUSTOM_OPS

COUNT_METHOD = "qemu-system-arm TCG plugin (runtime/emulation): instructions between markers around every op, hook cost removed"


def footprint_of(ev: Evaluation) -> Footprint:
    """The bench record's footprint of one evaluation (board limits from runtime/mcu/boards.py)."""
    board, fp = ev.board, ev.footprint
    stack_memory = board.stack.size if board.separate_stack else 0
    return Footprint(flash_code=sum(fp.code.values()), flash_model=fp.model, flash_data=fp.data_init,
                     sram_arena=fp.arena, sram_stack=ev.stack_peak, sram_other=fp.data_bss,
                     flash_limit=board.flash.size, sram_limit=board.ram.size + stack_memory)


def host_predictions(model_path: Path, x: np.ndarray) -> np.ndarray:
    """Top-1 class of every image by LCE's interpreter on this machine (the agreement reference)."""
    try:
        run = remote_measure._lce_runner(model_path.read_bytes(), 1)[0]
    except RuntimeError as exc:
        raise BenchError(f"agreement needs LCE's interpreter on this machine: {exc}") from None
    return np.array([int(np.argmax(run(x[i:i + 1]).reshape(-1))) for i in range(len(x))], dtype=np.int64)


class McuEngine(Engine):
    """Runs the bundle's engine blob as firmware on the device's emulated board."""

    name = "bitat-mcu"
    registered_ops = LCE_CUSTOM_OPS

    def __init__(self, board: Board) -> None:
        self.board = board

    @classmethod
    def create(cls, request: SessionRequest) -> McuEngine:
        device = request.device
        if not device.board:
            raise BenchError(f"engine {cls.name} runs on microcontroller boards; '{device.name}' is not one "
                             "(use --device netduinoplus2, mps2-an386, mps2-an500 or mps3-an547)")
        toolchain.require_toolchain()
        return cls(get_board(device.board))

    def measure(self, stager: Stager, request: SessionRequest, model: ModelFile, log: Log) -> Measurement:
        bundle = request.bundle
        if model.kind != "lce":
            raise BenchError(f"engine {self.name} runs the LCE model's engine blob, not the {model.kind} model; "
                             "pass --model lce")
        blob_path = BundleDir(bundle.root).mcu_blob
        if not blob_path.is_file():
            raise BenchError(f"bundle {bundle.root}: {blob_path.name} (the engine's compiled model) is missing; "
                             "re-run the convert stage")
        if bundle.eval_path is None:
            raise BenchError(f"bundle {bundle.root}: eval.npz is missing; the firmware needs eval images")
        x, y = load_eval(bundle.eval_path, request.eval_samples)
        blob = blob_path.read_bytes()
        config = project.model_config(blob, list(bundle.manifest.deploy.input_shape),
                                      len(bundle.manifest.classes))
        log(f"{self.name}: {len(x)} images on {self.board.name} ({self.board.core}, EMULATED)")
        ev = evaluate(self.board, blob, config, x, Path(stager.transport.workdir()) / "mcu", timeout=request.timeout)
        predictions = ev.logits.argmax(axis=1)
        reference = host_predictions(model.path, x)
        agreement = float(np.mean(predictions == reference))
        accuracy = None
        if y is not None:
            correct = int(np.sum(predictions == y))
            accuracy = Accuracy(correct=correct, total=len(x), top1=correct / len(x), agreement_top1=agreement,
                                agreement_reference="lce-interpreter on this machine")
        instructions = Instructions(
            per_inference=round(ev.instructions_per_inference), cpu=self.board.core, method=COUNT_METHOD,
            per_op=[OpCount(index=op.index, op=op.name, instructions=round(op.instructions), binary_macs=op.binary_macs)
                    for op in ev.ops],
            binary_macs_per_instruction=ev.binary_macs_per_instruction,
        )
        notes = [f"binary GEMM kernel {ev.kernel}", f"agreement_top1 with the host LCE interpreter {agreement:.6f}"]
        if y is None:
            notes.append("eval.npz has no labels ('y'): top-1 not measured")
        return measured(model, engine=self.name, engine_version=f"blob {config.blob_sha256[:12]}",
                        backend=f"{self.board.name} ({self.board.core}), kernel {ev.kernel}",
                        instructions=instructions, footprint=footprint_of(ev), accuracy=accuracy, notes=notes)
