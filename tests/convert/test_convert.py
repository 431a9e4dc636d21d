"""End to end through ``bitat-edge convert``: hand-built ONNX models our trainer did not make, and clean failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnx_nets import OnnxNet

from bitat_edge.cli import main
from bitat_edge.manifest import InputSpec, Manifest
from bitat_edge.manifest import load as load_manifest

CLASSES = [f"c{i}" for i in range(5)]


def _manifest(path, shape, name="foreign"):
    return Manifest(model_name=name, input=InputSpec(shape=list(shape)), classes=CLASSES).save(path)


def _foreign_binary_net(path):
    """A binary net in a structure our trainer never writes: Sign(Sign(x)+c), BN before the sign,
    same-zero padding, PReLU after the conv, squeeze-excite, concat, pools, a reshape chain, MatMul head."""
    net = OnnxNet((1, 3, 12, 12), seed=3)
    r = net.rng
    x = net.conv(net.input, r.normal(0, 0.4, (32, 3, 3, 3)).astype(np.float32), r.normal(0, 0.1, 32).astype(np.float32),
                 pads=1)
    x = net.op("Clip", [x, net.const(0.0), net.const(6.0)])
    x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 6x6
    y = net.sign_sign(net.bn(x, 32), 0.25)
    y = net.conv(y, net.binary_weight(32, 32, 3), pads=1, name="bin_same_zero")
    y = net.op("PRelu", [y, net.const(r.uniform(0.05, 0.3, (32, 1, 1)))])
    x = net.op("Add", [y, x])
    t = net.op("Add", [x, net.per_channel(32)])
    y = net.pad(net.binarize(t), (1, 1, 1, 1), 1.0)
    y = net.conv(y, net.binary_weight(32, 32, 3), strides=2, name="bin_s2_even")  # LCE's miscompile case
    y = net.op("HardSwish", [net.bn(y, 32)])
    side = net.conv(x, r.normal(0, 0.3, (32, 1, 3, 3)).astype(np.float32), strides=2, pads=1, group=32)
    side = net.op("Div", [side, net.const(2.0)])
    x = net.op("Concat", [y, side], axis=1)  # 64 x 3 x 3
    gate = net.op("GlobalAveragePool", [x])
    gate = net.op("HardSigmoid", [net.conv(gate, r.normal(0, 0.3, (64, 64, 1, 1)).astype(np.float32))])
    x = net.op("Mul", [x, gate])
    x = net.op("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    x = net.op("Sub", [x, net.op("Sigmoid", [x])])
    x = net.op("GlobalAveragePool", [x])
    shape = net.op("Shape", [x])
    batch = net.op("Unsqueeze", [net.op("Gather", [shape, net.const(0, np.int64)], axis=0), net.const([0], np.int64)])
    x = net.op("Reshape", [x, net.op("Concat", [batch, net.const([-1], np.int64)], axis=0)])
    x = net.op("MatMul", [x, net.const(r.normal(0, 0.5, (64, 5)))])
    logits = net.op("Add", [x, net.const(r.normal(0, 0.1, 5))])
    return net.save(path, logits, output_shape=[1, 5])


def _invoke(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    model = _foreign_binary_net(root / "foreign.onnx")
    manifest = _manifest(root / "manifest.json", (1, 3, 12, 12))
    rng = np.random.default_rng(0)
    np.savez(root / "eval.npz", x=rng.normal(size=(48, 3, 12, 12)).astype(np.float32),
             y=rng.integers(0, 5, 48).astype(np.int64))
    np.savez(root / "calib.npz", x=rng.normal(size=(16, 3, 12, 12)).astype(np.float32))
    out = root / "bundle"
    result = _invoke("onnx", model, "--manifest", manifest, "--eval", root / "eval.npz", "--calib",
                     root / "calib.npz", "--out", out)
    assert result.exit_code == 0, result.output
    return root, out, json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_foreign_binary_net_converts_with_parity(foreign):
    _, out, report = foreign
    assert report["lce_bconv2d"] == 2 and report["binary_check"]["ok"]
    assert report["binary_check"]["all_binary_intent_lowered"]
    engines = report["parity"]["engines"]
    assert report["parity"]["reference"] == "onnxruntime" and report["parity"]["labelled"]
    for name in ("lce", "tflite_fp32"):
        assert engines[name]["agreement"] == 1.0, engines[name]["listed"]
        assert engines[name]["max_abs_logit_diff"] < 1e-3
    assert "top1" in engines["tflite_int8"]
    lowering = {r["name"]: r["lowering"] for r in report["layers"]["layers"]}
    assert "same-zero" in lowering["bin_same_zero"] and "before the binarizer" in lowering["bin_s2_even"]
    assert report["layers"]["bops"] > 0 and report["layers"]["params"]["w1a1"] == 2 * 32 * 32 * 9


@pytest.mark.slow
def test_bundle_layout_matches_the_runtime_contract(foreign):
    root, out, report = foreign
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.tflite", "model_fp32.tflite", "model_int8.tflite", "model.blob", "model_mcu.blob", "eval.npz", "report.json",
         "report.md", "manifest.json"])
    bundle = load_manifest(out / "manifest.json")
    blob = (out / "model.blob").read_bytes()  # the C engine's model (tests/runtime/test_native_engine.py runs it)
    assert bundle.deploy.blob.sha256 == hashlib.sha256(blob).hexdigest() and report["engine_blob"]["written"]
    assert bundle.deploy.blob.arena_bytes == report["engine_blob"]["arena_bytes"] > 0
    mcu_blob = (out / "model_mcu.blob").read_bytes()  # memory-fused for microcontrollers: never a larger arena
    assert bundle.deploy.mcu_blob.sha256 == hashlib.sha256(mcu_blob).hexdigest() and report["engine_mcu_blob"]["written"]
    assert bundle.deploy.mcu_blob.arena_bytes <= bundle.deploy.blob.arena_bytes
    assert bundle.deploy.input_shape == [1, 12, 12, 3] and bundle.deploy.input_layout == "NHWC"
    assert set(bundle.deploy.reference_top1) == {"lce", "fp32", "int8"}
    # no integer grids: post-training int8, and the manifest and report say so
    assert bundle.deploy.int8_form == report["int8_form"] == "int8"
    assert (report["gate"]["min_agreement"], report["gate"]["min_int8_agreement"]) == (0.999, 0.5)
    with np.load(out / "eval.npz") as data, np.load(root / "eval.npz") as src:
        assert np.array_equal(data["x"], src["x"].transpose(0, 2, 3, 1)) and np.array_equal(data["y"], src["y"])
    assert report["sizes_bytes"]["lce"] == (out / "model.tflite").stat().st_size
    md = (out / "report.md").read_text()
    assert "LceBconv2d" in md and f"{report['lce_over_fp32']:.4f}" in md
    assert "Integer model (`tflite_int8`): **int8** form (every tensor int8)" in md
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_convert_time_benchmark_runs_the_convert_run_pipeline(foreign, tmp_path):
    from benchmarks import convert_time

    root, _, report = foreign
    run = tmp_path / "run"
    run.mkdir()
    for source, name in (("foreign.onnx", "model.onnx"), ("manifest.json", "manifest.json"),
                         ("eval.npz", "eval.npz"), ("calib.npz", "calib.npz")):
        (run / name).write_bytes((root / source).read_bytes())
    result = convert_time.main([str(run), "--repeats", "1", "--results", str(tmp_path / "ct.json")])
    assert not (run / "deploy").exists()  # the benchmark never writes into the run
    assert list(result["cold_seconds"]) == ["load", "build_keras", "lce", "fp32", "int8", "blob", "parity", "report",
                                            "write", "conversion_total", "total"]
    assert result["output"]["lce_bconv2d"] == report["lce_bconv2d"] == 2
    assert result["output"]["calibration_images"] == report["calibration_images"] == 16
    assert result["output"]["eval_images"] == 48 and result["run"] == "run"
    written = (tmp_path / "ct.json").read_text() + (tmp_path / "ct.md").read_text()
    assert str(tmp_path) not in written and "| parity |" in written


@pytest.mark.slow
def test_float_model_without_eval_uses_random_inputs(tmp_path):
    net = OnnxNet((1, 2, 5, 5))
    x = net.op("Relu", [net.conv(net.input, net.rng.normal(size=(4, 2, 3, 3)).astype(np.float32), pads=1)])
    y = net.op("Gemm", [net.op("Flatten", [x]), net.const(net.rng.normal(size=(5, 100))), net.const(np.zeros(5))],
               transB=1)
    model = net.save(tmp_path / "f.onnx", y, output_shape=[1, 5])
    result = _invoke("onnx", model, "--manifest", _manifest(tmp_path / "m.json", (1, 2, 5, 5)), "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert not report["parity"]["labelled"] and report["parity"]["images"] == 64
    assert report["lce_bconv2d"] == 0 and report["parity"]["engines"]["lce"]["agreement"] == 1.0
    with np.load(tmp_path / "b" / "eval.npz") as data:
        assert set(data.files) == {"x"}


def _unsupported(tmp_path, op):
    net = OnnxNet((1, 2, 4, 4))
    if op == "Resize":
        x = net.op("Resize", [net.input, "", net.const([1.0, 1.0, 2.0, 2.0])], mode="nearest")
        y = net.op("Flatten", [x])
        return net.save(tmp_path / "u.onnx", y, output_shape=[1, 128])
    flat = net.op("Reshape", [net.input, net.const([1, 4, 8], np.int64)])
    w = net.const(np.zeros((1, 4 * 3, 8)))
    r = net.const(np.zeros((1, 4 * 3, 3)))
    lstm = net.op("LSTM", [flat, w, r], hidden_size=3)
    y = net.op("Flatten", [lstm])
    return net.save(tmp_path / "u.onnx", y, output_shape=[1, 12])


@pytest.mark.parametrize("op", ["Resize", "LSTM"])
def test_unsupported_op_fails_cleanly_and_writes_nothing(tmp_path, op):
    model = _unsupported(tmp_path, op)
    result = _invoke("onnx", model, "--manifest", _manifest(tmp_path / "m.json", (1, 2, 4, 4)), "--out", tmp_path / "b")
    assert result.exit_code == 1
    assert f"({op}) is not supported" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "b").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_conversion_keeps_the_previous_bundle(tmp_path):
    model = tmp_path / "bad.onnx"
    model.write_bytes(b"\x08\x07garbage" * 10)
    out = tmp_path / "b"
    out.mkdir()
    (out / "model.tflite").write_bytes(b"previous")
    (out / "manifest.json").write_bytes(b"previous manifest")  # a previous bundle: --out may replace it
    result = _invoke("onnx", model, "--manifest", _manifest(tmp_path / "m.json", (1, 2, 4, 4)), "--out", out)
    assert result.exit_code == 1 and str(model) in result.output and "Traceback" not in result.output
    assert (out / "model.tflite").read_bytes() == b"previous"


def test_manifest_that_does_not_match_the_model_is_an_error(tmp_path):
    model = _unsupported(tmp_path, "Resize")
    result = _invoke("onnx", model, "--manifest", _manifest(tmp_path / "m.json", (1, 3, 4, 4)), "--out", tmp_path / "b")
    assert result.exit_code == 1 and "does not match the ONNX input" in result.output


def test_run_dir_without_export_is_an_error(tmp_path):
    result = _invoke("run", tmp_path)
    assert result.exit_code == 1 and "missing model.onnx, manifest.json, eval.npz, calib.npz" in result.output


def test_ops_come_from_the_registry_and_the_doc_table_is_generated_from_it():
    from convert.lowering import LOWERINGS, SUPPORTED_OPS

    result = _invoke("ops")
    assert result.exit_code == 0
    handled = {op for rule in LOWERINGS.rules if rule.handler is not None for op in rule.ops}
    assert handled | {"GreaterOrEqual", "Constant"} <= set(SUPPORTED_OPS)
    assert all(op in result.output for op in SUPPORTED_OPS)
    assert all(rule.becomes for rule in LOWERINGS.rules)  # every registered op is documented
    doc = (Path(__file__).parents[2] / "convert" / "SUPPORTED_OPS.md").read_text()
    assert all(f"`{op}`" in doc for op in handled | {"GreaterOrEqual", "Constant"})
    assert LOWERINGS.markdown_table() in doc, (
        "convert/SUPPORTED_OPS.md is out of date: replace its op table by `bitat-edge convert ops --markdown`")
    table = _invoke("ops", "--markdown")
    assert table.exit_code == 0 and table.output == LOWERINGS.markdown_table()


def _mistake(root: Path, what: str) -> tuple[list[str], Path]:
    """CLI arguments for one user mistake in the manifest, eval or calibration set, and the file at fault."""
    model = _unsupported(root, "Resize")  # loads fine; every mistake here is found before any lowering
    manifest = _manifest(root / "manifest.json", (1, 2, 4, 4))
    rng = np.random.default_rng(0)
    np.savez(root / "eval.npz", x=rng.normal(size=(6, 2, 4, 4)).astype(np.float32), y=np.arange(6) % 5)
    np.savez(root / "calib.npz", x=rng.normal(size=(3, 2, 4, 4)).astype(np.float32))
    data = json.loads(manifest.read_text())
    culprit = manifest
    if what == "manifest not JSON":
        manifest.write_text("{\"schema_version\": 2,")
    elif what == "manifest missing field":
        del data["classes"]
        manifest.write_text(json.dumps(data))
    elif what == "manifest old schema":
        manifest.write_text(json.dumps(data | {"schema_version": 1}))
    elif what == "manifest bad precision":
        data["layers"] = [{"name": "c", "op": "conv", "precision": "w9a9"}]
        manifest.write_text(json.dumps(data))
    elif what == "manifest missing":
        manifest.unlink()
    elif what == "eval without x":
        culprit = root / "eval.npz"
        np.savez(culprit, images=np.zeros((6, 2, 4, 4), np.float32))
    elif what == "eval labels wrong":
        culprit = root / "eval.npz"
        np.savez(culprit, x=np.zeros((6, 2, 4, 4), np.float32), y=np.zeros((6, 2)))
    elif what == "eval not npz":
        culprit = root / "eval.npz"
        culprit.write_bytes(b"PK\x03\x04 not a zip")
    elif what == "calib wrong shape":
        culprit = root / "calib.npz"
        np.savez(culprit, x=np.zeros((3, 4, 4, 2), np.float32))
    args = ["onnx", model, "--manifest", manifest, "--eval", root / "eval.npz", "--calib", root / "calib.npz",
            "--out", root / "bundle"]
    return args, culprit


MISTAKES = ["manifest not JSON", "manifest missing field", "manifest old schema", "manifest bad precision",
            "manifest missing", "eval without x", "eval labels wrong", "eval not npz", "calib wrong shape"]


@pytest.mark.parametrize("what", MISTAKES)
def test_manifest_and_bundle_input_mistakes_are_one_line_and_write_nothing(tmp_path, what):
    args, culprit = _mistake(tmp_path, what)
    result = _invoke(*args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {culprit}") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (ValueError, OSError))
    assert not (tmp_path / "bundle").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_run_dir_with_a_bad_manifest_is_one_line(tmp_path):
    args, _ = _mistake(tmp_path, "manifest missing field")
    (tmp_path / args[1].name).rename(tmp_path / "model.onnx")
    result = _invoke("run", tmp_path)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"{tmp_path / 'manifest.json'}: field 'classes' is missing" in result.output
    assert not (tmp_path / "deploy").exists()


@pytest.mark.slow
def test_unwritable_bundle_directory_is_one_line(tmp_path):
    net = OnnxNet((1, 2, 4, 4))
    y = net.op("Flatten", [net.op("GlobalAveragePool", [net.op("Relu", [net.input])])])
    logits = net.op("Gemm", [y, net.const(np.ones((len(CLASSES), 2))), net.const(np.zeros(len(CLASSES)))], transB=1)
    model = net.save(tmp_path / "f.onnx", logits, output_shape=[1, len(CLASSES)])
    (tmp_path / "file").write_text("a regular file, not a directory")
    out = tmp_path / "file" / "bundle"
    result = _invoke("onnx", model, "--manifest", _manifest(tmp_path / "m.json", (1, 2, 4, 4)), "--out", out)
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert f"{out}: cannot write the bundle" in result.output and "Traceback" not in result.output
