"""The parity gate: a conversion whose models do not agree with the reference writes no bundle (the report is
kept aside), keeps the previous bundle, and exits non-zero; the thresholds are the user's to set. Inputs
that can only give garbage (NaN images, a class list that does not fit the logits) fail before any
conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx_nets import OnnxNet

from bitat_edge.cli import main
from bitat_edge.layout import BundleDir
from bitat_edge.manifest import InputSpec, Manifest
from convert.gate import ParityGate

SHAPE = (1, 16, 6, 6)
CLASSES = 10


def _snapped_net(path: Path, jitter: float) -> Path:
    """Binary convs whose weights are +/-scale only within LCE's tolerance (|W/scale| - 1 up to ``jitter``):
    LCE snaps them to +/-scale, so its logits move while ONNX Runtime computes the weights as stored."""
    net = OnnxNet(SHAPE, seed=5)
    x = net.input
    for i in range(2):
        weight = net.binary_weight(16, 16, 3)
        factor = 1 + net.rng.uniform(-jitter, jitter, weight.shape)
        factor[:, 0, 0, 0] = 1  # LCE's scale is |W[o, 0, 0, 0]|
        weight *= factor.astype(np.float32)
        x = net.bn(net.conv(net.pad(net.binarize(x), (1, 1, 1, 1), 1.0), weight, name=f"bconv{i}"), 16)
    x = net.op("Flatten", [net.op("GlobalAveragePool", [x])])
    logits = net.op("Gemm", [x, net.const(net.rng.normal(0, 1, (CLASSES, 16))), net.const(np.zeros(CLASSES))],
                    transB=1)
    return net.save(path, logits, output_shape=[1, CLASSES])


def _manifest(path: Path, classes: int = CLASSES) -> Path:
    return Manifest(model_name="gate", input=InputSpec(shape=list(SHAPE)),
                    classes=[f"c{i}" for i in range(classes)]).save(path)


def _convert(*args) -> object:
    return CliRunner().invoke(main, ["convert", "onnx", *map(str, args)])


@pytest.mark.slow
def test_snapped_weights_fail_the_gate_keep_the_old_bundle_and_the_report(tmp_path):
    model = _snapped_net(tmp_path / "m.onnx", jitter=0.0045)
    manifest = _manifest(tmp_path / "manifest.json")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(0).normal(size=(300, *SHAPE[1:])).astype(np.float32))
    out = tmp_path / "bundle"
    out.mkdir()
    for path in BundleDir(out).members():  # a previous bundle
        path.write_text("previous")
    args = [model, "--manifest", manifest, "--eval", tmp_path / "eval.npz", "--out", out]

    result = _convert(*args)
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert f"Error: {out}: no bundle written: the parity gate failed (lce agrees with onnxruntime on" in result.output
    assert "(at least 99.90 % required)" in result.output and "tflite_fp32" not in result.output
    assert all(p.read_text() == "previous" for p in BundleDir(out).members())
    kept = BundleDir(out).rejected
    report = json.loads((kept / "report.json").read_text())
    assert sorted(p.name for p in kept.iterdir()) == ["report.json", "report.md"]
    lce = report["parity"]["engines"]["lce"]
    assert not report["gate"]["passed"] and 0.9 < lce["agreement"] < 0.999, lce["agreement"]
    assert report["parity"]["engines"]["tflite_fp32"]["agreement"] == 1.0  # TFLite computes the weights as stored
    assert "FAILED, no bundle written" in (kept / "report.md").read_text()
    print(f"parity gate: snapped weights give LCE agreement {100 * lce['agreement']:.2f} % -> refused")

    result = _convert(*args, "--min-agreement", 90, "--min-int8-agreement", 80)  # the user accepts the difference
    assert result.exit_code == 0, result.output
    assert "parity gate passed: agreement >= 90.00 %" in result.output
    assert BundleDir(out).is_bundle() and not kept.exists()
    assert json.loads(BundleDir(out).report_json.read_text())["gate"]["passed"]


@pytest.mark.parametrize("what", ["nan images", "inf calibration", "classes", "torch logits width", "label range"])
def test_inputs_that_only_give_garbage_fail_before_conversion(tmp_path, what):
    model = _snapped_net(tmp_path / "m.onnx", jitter=0.0)
    manifest = _manifest(tmp_path / "manifest.json", CLASSES + 1 if what == "classes" else CLASSES)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *SHAPE[1:])).astype(np.float32)
    calib = x.copy()
    arrays = {"y": rng.integers(0, CLASSES, 8)}
    if what == "nan images":
        x[3, 0, 0, 0] = np.nan
    elif what == "inf calibration":
        calib[0, 1, 2, 3] = np.inf
    elif what == "torch logits width":
        arrays["torch_logits"] = rng.normal(size=(8, CLASSES + 2)).astype(np.float32)
    elif what == "label range":
        arrays["y"][5] = CLASSES
    np.savez(tmp_path / "eval.npz", x=x, **arrays)
    np.savez(tmp_path / "calib.npz", x=calib)
    result = _convert(model, "--manifest", manifest, "--eval", tmp_path / "eval.npz", "--calib",
                      tmp_path / "calib.npz", "--out", tmp_path / "bundle")
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    expected = {"nan images": "eval.npz: the eval images hold 1 NaN or infinite values",
                "inf calibration": "calib.npz: the calibration images hold 1 NaN or infinite values",
                "classes": f"manifest.json: lists {CLASSES + 1} classes but {model} gives {CLASSES} logits",
                "torch logits width": "eval.npz: torch_logits is float32 of shape (8, 12), expected (8, 10)",
                "label range": "eval.npz: y holds labels outside 0..9"}[what]
    assert expected in result.output
    assert not (tmp_path / "bundle").exists()


def _parity(**engines: tuple[float, float]) -> dict:
    return {"reference": "onnxruntime", "engines": {
        name: {"agreement": agreement, "max_abs_logit_diff": error, "nonfinite_images": 0}
        for name, (agreement, error) in engines.items()}}


def test_gate_thresholds():
    good = _parity(onnxruntime=(1.0, 0.0), lce=(0.9995, 3.0), tflite_fp32=(1.0, 1e-5), tflite_int8=(0.97, 0.4))
    assert ParityGate().failures(good) == []
    assert ParityGate(max_logit_error=1.0).failures(good) == ["lce's max |logit diff| is 3 (at most 1 allowed)"]
    bad = _parity(onnxruntime=(1.0, 0.0), lce=(0.98, 3.0), tflite_fp32=(1.0, 1e-5), tflite_int8=(0.45, 0.4))
    assert [f.split(" agrees")[0] for f in ParityGate().failures(bad)] == ["lce", "tflite_int8"]
    assert ParityGate(0.97, 0.4).failures(bad) == []
    nan = _parity(onnxruntime=(1.0, 0.0), lce=(1.0, float("nan")), tflite_fp32=(1.0, 0.0), tflite_int8=(1.0, 0.0))
    nan["engines"]["lce"]["nonfinite_images"] = 3
    assert ParityGate(max_logit_error=10.0).failures(nan) == [
        "lce gives NaN or infinite logits on 3 images", "lce's max |logit diff| is nan (at most 10 allowed)"]
    grid = _parity(onnxruntime=(0.998, 0.0), lce=(0.998, 3.0), tflite_fp32=(0.998, 1e-5), tflite_int8=(0.985, 0.4))
    assert [f.split(" agrees")[0] for f in ParityGate().failures(grid)] == ["lce", "tflite_fp32"]
    assert [f.split(" agrees")[0] for f in ParityGate().for_graph(grids=True).failures(grid)] == ["tflite_int8"]
    assert ParityGate(min_int8_agreement=0.98).for_graph(grids=True).failures(grid) == []  # a set threshold wins
    assert ParityGate().for_graph(grids=True).verdict(grid)["min_int8_agreement"] == 0.99
    assert ParityGate().verdict(grid) | {"failures": []} == {"min_agreement": 0.999, "min_int8_agreement": 0.5,
                                                             "max_logit_error": None, "passed": False, "failures": []}
    with_torch = {**good, "reference": "pytorch"}
    with_torch["engines"]["onnxruntime"] = {"agreement": 0.9, "max_abs_logit_diff": 1.0, "nonfinite_images": 0}
    assert ParityGate().failures(with_torch)[0].startswith("onnxruntime agrees with pytorch on 90.00 %")
