"""UniQ, QuantNet and QAF end to end in the engine: train on tiny synthetic data, rebuild the trained
model from its checkpoint with the layers it was trained with, and export it (the exporter checks
ONNX Runtime against PyTorch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train.assembly import build_from_checkpoint
from train.config import load_config
from train.engine import train
from train.export import export_onnx
from train.quant.specs import layer_specs

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke_synthetic.yaml"
CASES = {
    "uniq_w1a1": ("{name: uniq, bits: 1, calibration_batches: 2}", ["float", "w1a1", "w1a1", "w1a1", "float"]),
    "uniq_w4a4": ("{name: uniq, bits: 4, calibration_batches: 2}", ["float", "w4a4", "w4a4", "w4a4", "float"]),
    "quantnet": ("{name: quantnet, hidden: 8}", ["float", "w1a1", "w1a1", "w1a1", "float"]),
    "qaf_w4": ("{name: qaf, bits: 4, outer: 3, inner: 3, init_iterations: 3, bn_batches: 2}",
               ["float", *["w4a32"] * 6, "float", "float"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_method_trains_rebuilds_and_exports(tmp_path, case):
    method, precisions = CASES[case]
    cfg = load_config(SMOKE, [f"method={method}", "optim.epochs=1"])
    summary = train(cfg, tmp_path, resume=False)
    assert 0.0 <= summary["test_top1"] <= 1.0
    model, _ = build_from_checkpoint(tmp_path / "checkpoints" / "best.pt", torch.device("cpu"))
    assert [str(s.precision) for s in layer_specs(model)] == precisions
    export_onnx(model, (1, 1, 16, 16), tmp_path / "model.onnx")
