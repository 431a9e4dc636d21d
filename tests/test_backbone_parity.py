"""Every shipped backbone at a small width: train (a few binary steps) -> export -> convert -> agreement with
PyTorch >= 99.9 % for ONNX Runtime, LCE and the fp32 TFLite baseline (benchmarks/backbone_parity.py)."""

from __future__ import annotations

import pytest

from benchmarks import backbone_parity

EVAL_IMAGES = 1000  # 99.9 % allows one disagreement
MIN_AGREEMENT = 0.999


@pytest.mark.slow
@pytest.mark.parametrize("name", list(backbone_parity.BACKBONES))
def test_backbone_exports_converts_and_agrees(tmp_path, name):
    row = backbone_parity.measure(name, tmp_path, EVAL_IMAGES, steps=3)
    parity = {engine: row["parity"][engine]["agreement"] for engine in backbone_parity.ENGINES}
    print(f"backbone parity: {name} {row['input_nchw']}: " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in parity.items()))
    assert row["reference"] == "pytorch" and row["images"] == EVAL_IMAGES
    assert row["gate_passed"], row["gate_error"]
    for engine in ("onnxruntime", "lce", "tflite_fp32", "tflite_fp32_no_delegate"):
        assert parity[engine] >= MIN_AGREEMENT, (engine, parity)
    assert row["lce_bconv2d"] > 0 or name == "mobilenetv2", row  # MobileNetV2's binary-intent layers may stay float
