"""Damaged convert inputs: mutated and truncated ONNX models, manifests and .npz sets through loading,
checking and planning (everything before TensorFlow would start). Each is read or refused with one
line; none raises anything else, and nothing is written (counts in the test log's fuzz section)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzzing import Outcomes, flips, mutate_message, stray_files, truncations
from onnx_nets import OnnxNet

from bitat_edge.manifest import InputSpec, Manifest
from bitat_edge.schema import SchemaError
from convert.errors import ConvertError
from convert.pipeline import ConvertRequest, load_inputs

MUTATED_MODELS = 300
FLIPPED_MODELS = 260
SHAPE = (1, 4, 6, 6)


def _rich_net() -> onnx.ModelProto:
    """Many op kinds at 4 channels: binarizers of both forms, +1 and zero padding, depthwise, pools, PRelu,
    squeeze-excite, a Shape -> Reshape chain and a Gemm head."""
    net = OnnxNet(SHAPE, seed=1)
    r = net.rng
    x = net.conv(net.input, r.normal(0, 0.4, (4, 4, 3, 3)).astype(np.float32), r.normal(0, 0.1, 4).astype(np.float32),
                 pads=1)
    x = net.op("Clip", [net.bn(x, 4), net.const(0.0), net.const(6.0)])
    y = net.conv(net.pad(net.binarize(net.op("Sub", [x, net.per_channel(4)])), (1, 1, 1, 1), 1.0),
                 net.binary_weight(4, 4, 3), strides=2)
    y = net.op("PRelu", [net.bn(y, 4), net.const(r.uniform(0.05, 0.3, (4, 1, 1)))])
    z = net.conv(net.sign_sign(net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])), net.binary_weight(4, 4, 3),
                 pads=1)
    y = net.op("Add", [y, z])
    side = net.conv(y, r.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32), pads=1, group=4)
    x = net.op("Concat", [y, net.op("HardSwish", [side])], axis=1)
    gate = net.op("HardSigmoid", [net.op("GlobalAveragePool", [x])])
    x = net.op("Mul", [x, gate])
    x = net.op("AveragePool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    x = net.op("GlobalAveragePool", [x])
    shape = net.op("Shape", [x])
    batch = net.op("Unsqueeze", [net.op("Gather", [shape, net.const(0, np.int64)], axis=0), net.const([0], np.int64)])
    x = net.op("Reshape", [x, net.op("Concat", [batch, net.const([-1], np.int64)], axis=0)])
    logits = net.op("Gemm", [x, net.const(r.normal(0, 0.5, (5, 8))), net.const(r.normal(0, 0.1, 5))], transB=1)
    return net.model(logits, output_shape=[1, 5])


def _tiny_net() -> onnx.ModelProto:
    """The smallest net with a binary conv (every truncation offset is tried)."""
    net = OnnxNet((1, 2, 3, 3), seed=2)
    y = net.conv(net.binarize(net.input), net.binary_weight(2, 2, 1))
    return net.model(net.op("Flatten", [y]), output_shape=[1, 18])


def _manifest(path: Path, shape, classes: int) -> Path:
    return Manifest(model_name="fuzz", input=InputSpec(shape=list(shape)), classes=[f"c{i}" for i in range(classes)]
                    ).save(path)


def _through_loading(outcomes: Outcomes, cases, workdir: Path, shape, classes: int, source: bool = False) -> None:
    manifest = _manifest(workdir / "manifest.json", shape, classes)
    model = workdir / "model.onnx"
    request = ConvertRequest(model, manifest, workdir / "bundle")
    for data in cases:
        model.write_bytes(data)
        outcomes.run(lambda: load_inputs(request), str(model) if source else None)
    assert not outcomes.record(stray_files(workdir, {model, manifest}))["stray files"]
    assert not (workdir / "bundle").exists()


def test_mutated_onnx_models_are_loaded_or_refused_in_one_line(workdir):
    base = _rich_net()
    names = sorted({t for n in base.graph.node for t in (*n.input, *n.output)} | {n.name for n in base.graph.node})
    rng = random.Random(0)

    def mutated():
        for _ in range(MUTATED_MODELS):
            model = onnx.ModelProto()
            model.CopyFrom(base)
            for _ in range(rng.randint(1, 3)):
                mutate_message(model, rng, names)
            yield model.SerializeToString()
        yield from flips(base.SerializeToString(), FLIPPED_MODELS)

    outcomes = Outcomes("convert: mutated ONNX models (fields removed/changed, bytes flipped)", ConvertError)
    _through_loading(outcomes, mutated(), workdir, SHAPE, 5)
    assert outcomes.counts["refused"] > 100 and outcomes.counts["read"] > 50  # both sides are exercised


def test_truncated_onnx_models_are_refused_in_one_line(workdir):
    data = _tiny_net().SerializeToString()
    outcomes = Outcomes("convert: ONNX truncated at every offset", ConvertError)
    _through_loading(outcomes, truncations(data), workdir, (1, 2, 3, 3), 18, source=True)
    assert outcomes.counts["refused"] + outcomes.counts["read"] == len(data) >= 200


def test_truncated_and_flipped_manifests_are_refused_in_one_line(workdir):
    model = workdir / "model.onnx"
    onnx.save(_tiny_net(), str(model))
    manifest = workdir / "manifest.json"
    good = _manifest(manifest, (1, 2, 3, 3), 18).read_bytes()
    request = ConvertRequest(model, manifest, workdir / "bundle")
    outcomes = Outcomes("convert: manifest truncated at every offset, bytes flipped", (ConvertError, SchemaError))
    for data in [*truncations(good), *flips(good, 200)]:
        manifest.write_bytes(data)
        outcomes.run(lambda: load_inputs(request))
    assert not outcomes.record(stray_files(workdir, {model, manifest}))["stray files"]
    assert outcomes.counts["refused"] >= len(good)


@pytest.mark.parametrize("what", ["eval", "calib"])
def test_truncated_and_flipped_npz_sets_are_refused_in_one_line(workdir, what):
    model = workdir / "model.onnx"
    onnx.save(_tiny_net(), str(model))
    manifest = _manifest(workdir / "manifest.json", (1, 2, 3, 3), 18)
    rng = np.random.default_rng(0)
    sets = {"eval": workdir / "eval.npz", "calib": workdir / "calib.npz"}
    np.savez(sets["eval"], x=rng.normal(size=(3, 2, 3, 3)).astype(np.float32), y=np.arange(3))
    np.savez_compressed(sets["calib"], x=rng.normal(size=(3, 2, 3, 3)).astype(np.float32))
    target = sets[what]
    good = target.read_bytes()
    request = ConvertRequest(model, manifest, workdir / "bundle", sets["eval"], sets["calib"])
    outcomes = Outcomes(f"convert: {what}.npz truncated at every offset, bytes flipped", ConvertError)
    for data in [*truncations(good), *flips(good, 200)]:
        target.write_bytes(data)
        outcomes.run(lambda: load_inputs(request), str(target))
    assert not outcomes.record(stray_files(workdir, {model, manifest, *sets.values()}))["stray files"]
    assert outcomes.counts["refused"] >= len(good) - 1
