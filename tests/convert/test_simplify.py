"""The simplification stage and binarizer recognition on hand-built ONNX graphs (no TensorFlow here).

Each graph is checked twice: what the plan decided (binary or not, why, which rewrites), and that the
simplified, folded graph still computes the source model's function in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx_nets import OnnxNet

from convert.errors import UnsupportedOpError
from convert.onnx_graph import binary_filter_scale, load_graph

SHAPE = (1, 8, 6, 6)


def _ort(model: bytes | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _net(tmp_path, build, *, stride=1, pads=0, weight=None, name="m.onnx"):
    """input - threshold -> build(net, x) -> Conv "bconv" -> global pool -> logits; returns (path, net, weight)."""
    net = OnnxNet(SHAPE)
    x = net.op("Sub", [net.input, net.per_channel(8)], name="x")
    w = net.binary_weight(8, 8, 3) if weight is None else weight
    y = net.conv(build(net, x), w, strides=stride, pads=pads, name="bconv")
    out = net.op("Flatten", [net.op("GlobalAveragePool", [y])])
    return net.save(tmp_path / name, out, output_shape=[1, 8]), net, w


def _clip(net: OnnxNet, x: str, low: float = -1.0, high: float = 1.0) -> str:
    return net.op("Clip", [x, net.const(low), net.const(high)])


def _checked(path):
    """The loaded graph, after checking that the simplified graph computes what the source does."""
    graph = load_graph(path)
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    np.testing.assert_allclose(_ort(graph.model, x), _ort(graph.reference, x), rtol=1e-5, atol=1e-5)
    return graph


# Straight-through estimators as exported: sign(x) and an estimate f(x) = clamp(x, -1, 1) written twice
# (two Clip nodes, as `f(x).detach()` and `f(x)` are), combined so that f cancels at inference.
STE_FORMS = {
    "a - b + b": lambda n, s, f1, f2: n.op("Add", [n.op("Sub", [s, f1]), f2]),
    "b + (a - b)": lambda n, s, f1, f2: n.op("Add", [f2, n.op("Sub", [s, f1])]),
    "(a + b) - b": lambda n, s, f1, f2: n.op("Sub", [n.op("Add", [s, f1]), f2]),
    "a + (b - b)": lambda n, s, f1, f2: n.op("Add", [s, n.op("Sub", [f1, f2])]),
    "(b - b) + a": lambda n, s, f1, f2: n.op("Add", [n.op("Sub", [f1, f2]), s]),
    "a - (b - b)": lambda n, s, f1, f2: n.op("Sub", [s, n.op("Sub", [f1, f2])]),
}


@pytest.mark.parametrize("form", list(STE_FORMS))
def test_identity_straight_through_estimators_are_removed(tmp_path, form):
    path, _, _ = _net(tmp_path, lambda n, x: STE_FORMS[form](n, n.op("Sign", [x]), _clip(n, x), _clip(n, x)))
    graph = _checked(path)
    plan = graph.conv_plans["bconv"]
    assert plan.binary and plan.binarized_from == "x", plan
    assert f"STE `{form}` removed" in plan.rewrites and any("plain Sign" in r for r in plan.rewrites)
    assert graph.op_histogram() == {"Sub": 1, "Sign": 1, "Conv": 1, "GlobalAveragePool": 1, "Flatten": 1}
    assert graph.plain_signs == {plan.data}


def test_weight_binarized_in_forward_with_a_detach_trick_folds_exactly(tmp_path):
    """ReActNet's weights: (mean|w| * sign(w)).detach() - clip(w).detach() + clip(w) -> +/-mean|w| exactly."""
    rng = np.random.default_rng(1)
    real = rng.normal(0, 0.5, (8, 8, 3, 3)).astype(np.float32)
    net = OnnxNet(SHAPE)
    x = net.op("Sign", [net.op("Sub", [net.input, net.per_channel(8)])])
    w = net.const(real)
    scale = net.op("ReduceMean", [net.op("Abs", [w])], axes=[1, 2, 3], keepdims=1)
    binary = net.op("Mul", [scale, net.op("Sign", [w])])
    weight = net.op("Add", [net.op("Sub", [binary, _clip(net, w)]), _clip(net, w)])
    y = net.op("Conv", [x, weight], name="bconv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    path = net.save(tmp_path / "m.onnx", net.op("Flatten", [net.op("GlobalAveragePool", [y])]), output_shape=[1, 8])
    graph = _checked(path)
    plan = graph.conv_plans["bconv"]
    expected = np.abs(real).mean(axis=(1, 2, 3), keepdims=True) * np.sign(real)
    conv = next(n for n in graph.nodes if n.name == "bconv")
    assert np.array_equal(graph.consts[conv.input[1]], expected.astype(np.float32))
    assert plan.binary and "weight expression folded to a constant" in plan.rewrites
    assert "STE `a - b + b` removed" in plan.rewrites


def test_a_scaled_soft_sign_is_not_binarized_and_says_why(tmp_path):
    """sign(x) - f(x) + 0.5 f(x) is not the identity: the conv stays float, binary-intent, with the reason."""
    def build(n, x):
        soft = n.op("Tanh", [x])
        return n.op("Add", [n.op("Sub", [n.op("Sign", [x]), soft]), n.op("Mul", [soft, n.const(0.5)])])

    graph = _checked(_net(tmp_path, build)[0])
    plan = graph.conv_plans["bconv"]
    assert not plan.binary and plan.binary_intent and "not an identity straight-through estimator" in plan.reason
    assert not graph.binarizers and not plan.rewrites


def test_an_estimator_whose_terms_broadcast_is_left_alone(tmp_path):
    """(u - v) + v with a u smaller than v broadcasts to v's shape: replacing it by u would be wrong."""
    def build(n, x):
        u = n.op("GlobalAveragePool", [x])
        return n.op("Add", [n.op("Sub", [u, x]), x])

    graph = _checked(_net(tmp_path, build)[0])
    assert graph.op_histogram()["Add"] == 1 and not graph.rewrites.by_tensor


def test_clamps_that_keep_the_sign_are_dropped(tmp_path):
    cases = {
        "after": (lambda n, x: _clip(n, n.op("Sign", [x]), -1.0, 1.0), "x"),
        "after, wider": (lambda n, x: _clip(n, n.op("Sign", [x]), -3.0, 2.0), "x"),
        "before": (lambda n, x: n.op("Sign", [_clip(n, x)]), "x"),
    }
    for i, (label, (build, source)) in enumerate(cases.items()):
        (tmp_path / str(i)).mkdir()
        plan = _checked(_net(tmp_path / str(i), build)[0]).conv_plans["bconv"]
        assert plan.binary and plan.binarized_from == source, label
        assert any("clamp" in r for r in plan.rewrites), (label, plan.rewrites)
    # clamp(x, 0, 1) changes the sign of negative x (to 0): not dropped, the sign reads the clamp
    plan = _checked(_net(tmp_path, lambda n, x: n.op("Sign", [_clip(n, x, 0.0, 1.0)]))[0]).conv_plans["bconv"]
    assert plan.binarized_from != "x" and not any("clamp" in r for r in plan.rewrites)


def test_identity_and_dropout_leftovers_are_removed(tmp_path):
    build = lambda n, x: n.op("Dropout", [n.op("Identity", [n.op("Sign", [n.op("Identity", [x])])])])  # noqa: E731
    graph = _checked(_net(tmp_path, build)[0])
    assert graph.conv_plans["bconv"].binary and "Identity" not in graph.op_histogram()


def test_sign_times_a_constant_is_folded_into_the_weights(tmp_path):
    path, _, weight = _net(tmp_path, lambda n, x: n.op("Mul", [n.const(-0.5), n.op("Sign", [x])]))
    graph = _checked(path)
    plan = graph.conv_plans["bconv"]
    conv = next(n for n in graph.nodes if n.name == "bconv")
    assert plan.binary and np.array_equal(graph.consts[conv.input[1]], (weight * -0.5).astype(np.float32))
    assert "scale -0.5 after the binarizer folded into the weights" in plan.rewrites
    assert "Mul" not in graph.op_histogram()


def test_a_pad_after_a_scaled_sign_keeps_its_meaning(tmp_path):
    """pad(2 * sign(x), value 2) = 2 * pad(sign(x), value 1): +1 padding of the binarized tensor."""
    path, _, _ = _net(tmp_path, lambda n, x: n.pad(n.op("Mul", [n.op("Sign", [x]), n.const(2.0)]), (1, 1, 1, 1), 2.0))
    plan = _checked(path).conv_plans["bconv"]
    assert plan.binary and plan.pad_value == 1.0 and plan.pads == (1, 1, 1, 1) and not plan.zero_correction


def test_a_per_channel_scale_after_a_sign_is_not_binarized(tmp_path):
    path, _, _ = _net(tmp_path, lambda n, x: n.op("Mul", [n.op("Sign", [x]), n.per_channel(8)]))
    plan = _checked(path).conv_plans["bconv"]
    assert not plan.binary and plan.binary_intent and "not a binarizer" in plan.reason


def test_a_plain_sign_read_by_anything_but_convolutions_stays_float(tmp_path):
    graph = _checked(_net(tmp_path, lambda n, x: n.op("Add", [n.op("Sign", [x]), x]))[0])
    assert not graph.binarizers and not graph.plain_signs
    assert graph.conv_plans["bconv"].binary_intent and not graph.conv_plans["bconv"].binary


def test_zero_padding_the_lce_kernel_cannot_fuse_is_kept_binary_with_a_correction(tmp_path):
    plan = _checked(_net(tmp_path, lambda n, x: n.op("Sign", [x]), stride=2, pads=1)[0]).conv_plans["bconv"]
    assert plan.binary and plan.zero_correction and plan.pad_value == 1.0 and plan.pads == (1, 0, 1, 0)
    assert "zero padding lowered as +1 padding minus a constant edge correction" in plan.rewrites


# -- QONNX ------------------------------------------------------------------------------------------

QONNX = "qonnx.custom_op.general"


def _qonnx_net(path, act_scale: float, weight_scale: np.ndarray, op: str = "BipolarQuant"):
    """input - threshold -> BipolarQuant(act_scale) -> Conv(BipolarQuant(W, weight_scale), stride 2, pads 1)."""
    net = OnnxNet(SHAPE)
    x = net.op("Sub", [net.input, net.per_channel(8)], name="x")
    real = net.rng.normal(0, 1, (8, 8, 3, 3)).astype(np.float32)
    extra = [net.const(0.0), net.const(1.0)] if op == "Quant" else []
    net.nodes += [helper.make_node(op, [x, net.const(act_scale), *extra], ["xq"], name="act_quant", domain=QONNX),
                  helper.make_node(op, [net.const(real), net.const(weight_scale), *extra], ["wq"], name="w_quant",
                                   domain=QONNX)]
    y = net.op("Conv", ["xq", "wq"], name="bconv", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    model = net.model(net.op("Flatten", [net.op("GlobalAveragePool", [y])]), output_shape=[1, 8])
    model.opset_import.append(helper.make_opsetid(QONNX, 1))
    onnx.save(model, str(path))
    return path, real


def test_qonnx_bipolar_quant_converts_to_a_binary_conv(tmp_path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    weight_scale = np.random.default_rng(2).uniform(0.1, 1.0, (8, 1, 1, 1)).astype(np.float32)
    path, real = _qonnx_net(tmp_path / "q.onnx", 0.5, weight_scale)
    graph = load_graph(path)
    plan = graph.conv_plans["bconv"]
    conv = next(n for n in graph.nodes if n.name == "bconv")
    assert plan.binary and plan.binarized_from == "x" and plan.zero_correction
    np.testing.assert_allclose(binary_filter_scale(graph.consts[conv.input[1]]), 0.5 * weight_scale.ravel(),
                               rtol=1e-6)
    assert "scale 0.5 after the binarizer folded into the weights" in plan.rewrites
    # The rewrite computes what qonnx's own executor computes for the QONNX model.
    x = np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)
    model = ModelWrapper(str(path)).transform(InferShapes())
    expected = execute_onnx(model, {model.graph.input[0].name: x})[model.graph.output[0].name]
    np.testing.assert_allclose(_ort(graph.reference, x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_ort(graph.model, x), expected, rtol=1e-5, atol=1e-6)


def test_other_qonnx_ops_are_a_clear_error(tmp_path):
    path, _ = _qonnx_net(tmp_path / "q.onnx", 1.0, np.ones((8, 1, 1, 1), np.float32), op="Quant")
    with pytest.raises(UnsupportedOpError, match=r"qonnx.custom_op.general.Quant\) is not supported: custom-domain"):
        load_graph(path)
