"""Loading the deploy bundle: op listing, and a clear error for every kind of corruption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime.bundle import load_bundle, load_eval
from runtime.errors import BenchError
from runtime.tflite_ops import custom_ops, operator_counts


def test_loads_real_bundle_and_lists_lce_ops(built_bundle):
    deploy, _ = built_bundle
    bundle = load_bundle(deploy.parent)  # a run directory works too
    assert bundle.root == deploy and bundle.run_dir == deploy.parent
    assert set(bundle.models) == {"lce", "fp32", "int8"} and bundle.eval_path == deploy / "eval.npz"
    assert len(bundle.models["lce"].sha256) == 64
    assert custom_ops(deploy / "model.tflite") == {"LceQuantize", "LceBconv2d"}
    assert custom_ops(deploy / "model_fp32.tflite") == set()
    assert operator_counts(deploy / "model.tflite")["LceBconv2d"] == 1
    x, y = load_eval(deploy / "eval.npz", limit=5)
    assert x.shape == (5, 8, 8, 1) and y.shape == (5,)


def test_reference_accuracy_uses_convert_keys_and_ignores_agreement(bundle_copy: Path, built_bundle):
    bundle = load_bundle(bundle_copy)
    assert bundle.reference_top1("lce") == round(built_bundle[1]["top1"]["lce"], 6)
    assert bundle.reference_top1("int8") == round(built_bundle[1]["top1"]["tflite_int8"], 6)
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["deploy"]["top1_is"] = "agreement"
    path.write_text(json.dumps(data))
    assert load_bundle(bundle_copy).reference_top1("lce") is None


def test_int8_form_defaults_to_int8_and_is_named_where_shown(bundle_copy: Path):
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["deploy"].pop("int8_form", None)  # a bundle written before the field existed
    path.write_text(json.dumps(data))
    assert load_bundle(bundle_copy).int8_form == "int8"
    data["deploy"]["int8_form"] = "int16x8"
    path.write_text(json.dumps(data))
    assert load_bundle(bundle_copy).int8_form == "int16x8"
    (bundle_copy / "model_int8.tflite").unlink()
    with pytest.raises(BenchError, match=r"the int8 model \(int16x8 form\) model_int8.tflite is missing"):
        load_bundle(bundle_copy)
    data["deploy"]["int8_form"] = "int4"
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=r"bad manifest .*int8_form"):
        load_bundle(bundle_copy, kinds=("lce",))


def test_truncated_flatbuffer_is_a_clear_error(bundle_copy: Path):
    model = bundle_copy / "model.tflite"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 3])
    with pytest.raises(BenchError, match="truncated or corrupt"):
        custom_ops(model)
    model.write_bytes(b"\0" * 3)
    with pytest.raises(BenchError, match="not a TFLite flatbuffer"):
        load_bundle(bundle_copy)


def test_bad_manifest_names_file_and_field(bundle_copy: Path):
    path = bundle_copy / "manifest.json"
    data = json.loads(path.read_text())
    data["classes"] = "shirt"
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=r"bad manifest .*field 'classes'"):
        load_bundle(bundle_copy)
    path.write_text("{not json")
    with pytest.raises(BenchError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_missing_model_and_missing_or_bad_eval(bundle_copy: Path):
    (bundle_copy / "model_int8.tflite").unlink()
    with pytest.raises(BenchError, match="the int8 model model_int8.tflite is missing"):
        load_bundle(bundle_copy)
    assert set(load_bundle(bundle_copy, kinds=("lce", "fp32")).models) == {"lce", "fp32"}
    (bundle_copy / "eval.npz").write_bytes(b"garbage")
    with pytest.raises(BenchError, match="not a readable .npz eval file"):
        load_bundle(bundle_copy, kinds=("lce",))
    np.savez(bundle_copy / "eval.npz", x=np.zeros((3, 9, 9, 1), np.float32))
    with pytest.raises(BenchError, match=r"images are \[9, 9, 1\] but the model takes \[8, 8, 1\]"):
        load_bundle(bundle_copy, kinds=("lce",))
    np.savez(bundle_copy / "eval.npz", x=np.zeros((3, 8, 8, 1), np.float32))
    x, y = load_eval(load_bundle(bundle_copy, kinds=("lce",)).eval_path)
    assert x.shape == (3, 8, 8, 1) and y is None  # unlabelled eval sets are allowed
    (bundle_copy / "eval.npz").unlink()
    assert load_bundle(bundle_copy, kinds=("lce",)).eval_path is None


def test_missing_bundle_directory(tmp_path: Path):
    with pytest.raises(BenchError, match="make train && make convert"):
        load_bundle(tmp_path / "runs" / "nothing")
    with pytest.raises(BenchError, match="no manifest.json"):
        load_bundle(tmp_path)
