"""Pools with padding TF's SAME cannot express (ResNet's ImageNet stem: max-pool 3x3, stride 2, pad 1) and
grouped convolutions convert exactly: LCE, fp32 and int8 TFLite, with and without XNNPACK."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from onnx_nets import OnnxNet

from bitat_edge.cli import main
from bitat_edge.manifest import InputSpec, Manifest
from convert.onnx_graph import GROUPED_BINARY_REASON

SHAPE = (1, 8, 10, 10)


def _net(path):
    net = OnnxNet(SHAPE, seed=7)
    r = net.rng
    x = net.conv(net.input, r.normal(0, 0.4, (8, 8, 3, 3)).astype(np.float32), pads=1)
    relu = net.op("Relu", [x])
    a = net.op("MaxPool", [relu], name="stem_pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    b = net.op("MaxPool", [net.bn(x, 8)], name="signed_pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = net.op("AveragePool", [x], name="avg_pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=1)
    y = net.op("Concat", [a, b, c], axis=1)  # 24 x 5 x 5
    g = net.conv(y, r.normal(0, 0.3, (12, 8, 3, 3)).astype(np.float32), r.normal(0, 0.1, 12).astype(np.float32),
                 pads=1, group=3, name="grouped")
    z = net.conv(net.binarize(g), net.binary_weight(12, 6, 1), group=2, name="grouped_binary")
    z = net.op("Flatten", [net.op("GlobalAveragePool", [net.op("Add", [net.bn(z, 12), g])])])
    logits = net.op("Gemm", [z, net.const(r.normal(0, 1, (6, 12))), net.const(np.zeros(6))], transB=1)
    return net.save(path, logits, output_shape=[1, 6])


@pytest.mark.slow
def test_padded_pools_and_grouped_convs_convert_exactly(tmp_path):
    model = _net(tmp_path / "m.onnx")
    manifest = Manifest(model_name="pools", input=InputSpec(shape=list(SHAPE)), classes=[f"c{i}" for i in range(6)]
                        ).save(tmp_path / "manifest.json")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(1).normal(size=(64, *SHAPE[1:])).astype(np.float32))
    result = CliRunner().invoke(main, ["convert", "onnx", str(model), "--manifest", str(manifest), "--eval",
                                       str(tmp_path / "eval.npz"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    engines = report["parity"]["engines"]
    for name in ("lce", "tflite_fp32", "tflite_fp32_no_delegate"):
        assert engines[name]["agreement"] == 1.0 and engines[name]["max_abs_logit_diff"] < 1e-4, name
    assert engines["tflite_int8"]["agreement"] >= 0.9 and engines["tflite_int8_no_delegate"]["images"] == 64
    ops = report["ops"]["lce"]
    assert ops["PAD"] + ops.get("PADV2", 0) >= 2 and ops["MIRROR_PAD"] == 1 and ops["MAX_POOL_2D"] == 2
    assert ops["SPLIT"] == 2 and "LceBconv2d" not in ops
    floats = {item["name"]: item["reason"] for item in report["layers"]["float_binary_intent"]}
    assert floats == {"grouped_binary": GROUPED_BINARY_REASON}
