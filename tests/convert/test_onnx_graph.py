"""Loading, checking and pattern-matching ONNX graphs, and the padding arithmetic (no TensorFlow here)."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx_nets import OnnxNet

from convert import padding
from convert.errors import OnnxLoadError, UnsupportedOpError
from convert.onnx_graph import GROUPED_BINARY_REASON, ConvLowering, binary_filter_scale, load_graph


def _small_binary(tmp_path, *, dims=(1, 8, 6, 6), sign_sign=False, weight=None, pad=None, conv_pads=0,
                  group=1, stride=1):
    net = OnnxNet((1, 8, 6, 6))
    x = net.op("Sub", [net.input, net.per_channel(8)])
    xb = net.sign_sign(x) if sign_sign else net.binarize(x)
    if pad is not None:
        xb = net.pad(xb, (1, 1, 1, 1), pad)
    w = net.binary_weight(8, 8 // group, 3) if weight is None else weight
    y = net.conv(xb, w, strides=stride, pads=conv_pads, group=group, name="bconv")
    y = net.op("Flatten", [net.op("GlobalAveragePool", [y])])
    return net.save(tmp_path / "m.onnx", y, output_shape=["N", 8], input_shape=dims)


def test_where_binarizer_with_one_padding_is_binary(tmp_path):
    graph = load_graph(_small_binary(tmp_path, pad=1.0))
    plan = graph.conv_plans["bconv"]
    assert plan.binary and plan.pad_value == 1.0 and plan.pads == (1, 1, 1, 1) and plan.folded_pad
    assert plan.binarized_from in {n.output[0] for n in graph.nodes if n.op_type == "Sub"}


def test_sign_sign_binarizer_is_recognised(tmp_path):
    graph = load_graph(_small_binary(tmp_path, sign_sign=True))
    assert graph.conv_plans["bconv"].binary
    assert len(graph.binarizer_nodes) == 2  # inner Sign and the Add


def test_a_sign_shared_with_other_ops_is_copied_for_the_convolutions(tmp_path):
    """Common-subexpression elimination merges torch.sign(x) with the inner Sign of Sign(Sign(x) + c); the
    merged Sign is read by a conv and by the Add: the conv gets a binarizer copy, the Add the float Sign."""
    net = OnnxNet((1, 8, 6, 6))
    plain = net.conv(net.op("Sign", [net.input]), net.binary_weight(8, 8, 3), name="plain")
    larq = net.conv(net.sign_sign(net.input), net.binary_weight(8, 8, 3), name="larq")
    y = net.op("Concat", [net.op("Flatten", [plain]), net.op("Flatten", [larq])], axis=1)
    graph = load_graph(net.save(tmp_path / "m.onnx", y, output_shape=[1, 256]))
    assert graph.conv_plans["plain"].binary and graph.conv_plans["larq"].binary
    signs = [n for n in graph.nodes if n.op_type == "Sign"]
    assert len(signs) == 3  # the shared float Sign, its copy for "plain", the outer Sign of "larq"
    copy = graph.conv_plans["plain"].data
    assert copy in graph.plain_signs and "copied for the convolutions" in " ".join(graph.conv_plans["plain"].rewrites)


def test_binary_intent_layers_that_stay_float_say_why(tmp_path):
    rng = np.random.default_rng(0)
    near = OnnxNet((1, 8, 6, 6)).binary_weight(8, 8, 3)
    near[3, 2, 1, 1] *= 1.02  # one weight 2 % off its channel's scale: only LCE's 0.005 tolerance fails
    zero = OnnxNet((1, 8, 6, 6)).binary_weight(8, 8, 3)
    zero[5, 0, 2, 2] = 0.0  # torch.sign(0) = 0 in a weight binarized in forward
    cases = {
        "not +/-scale": dict(weight=rng.normal(size=(8, 8, 3, 3)).astype(np.float32)),
        "depthwise": dict(group=8),
        "neither 1": dict(pad=0.5),
        "only by its tolerance: max |W/scale - 1| = 0.02 > 0.005 in 1 of 8 output channels (first: 3)": dict(
            weight=near),
        "1 are exactly 0": dict(weight=zero),
    }
    for i, (reason, kwargs) in enumerate(cases.items()):
        (tmp_path / str(i)).mkdir()
        plan = load_graph(_small_binary(tmp_path / str(i), **kwargs)).conv_plans["bconv"]
        assert plan.binarized_from and not plan.binary and reason in plan.reason, (reason, plan)
    # zero padding that *is* TF SAME stays binary (LCE's same-zero mode)
    assert load_graph(_small_binary(tmp_path, conv_pads=1)).conv_plans["bconv"].binary


def test_conv_plan_holds_the_final_lowering_decision(tmp_path):
    """Canonical pads, the lowering kind and the Keras padding mode, all decided when the graph loads."""
    cases = {  # kwargs: (binary, lowering, canonical pads, padding mode, description fragment)
        "one_same": (dict(pad=1.0), True, ConvLowering.SAME_ONE, (1, 1, 1, 1), "valid", "same-one"),
        "one_s2_even": (dict(pad=1.0, stride=2), True, ConvLowering.ONE_BEFORE_SIGN, (1, 0, 1, 0), "valid",
                        "before the binarizer"),
        "zero_same": (dict(conv_pads=1), True, ConvLowering.SAME, (1, 1, 1, 1), "same", "same-zero"),
        "zero_s2_even": (dict(conv_pads=1, stride=2), True, ConvLowering.ONE_BEFORE_SIGN, (1, 0, 1, 0), "valid",
                         "zero padding as +1 padding applied before the binarizer, VALID, minus a constant edge"),
        "valid": ({}, True, ConvLowering.VALID, (0, 0, 0, 0), "valid", "binary, VALID"),
    }
    for name, (kwargs, binary, lowering, pads, mode, text) in cases.items():
        (tmp_path / name).mkdir()
        graph = load_graph(_small_binary(tmp_path / name, **kwargs))
        plan = graph.conv_plans["bconv"]
        assert (plan.binary, plan.lowering, plan.pads, plan.padding_mode) == (binary, lowering, pads, mode), name
        assert text in plan.description, (name, plan.description)
        sub = next(n.output[0] for n in graph.nodes if n.op_type == "Sub")
        assert plan.reads == (sub if lowering is ConvLowering.ONE_BEFORE_SIGN else plan.data), name


def test_grouped_binary_conv_stays_float_with_the_reason(tmp_path):
    plan = load_graph(_small_binary(tmp_path, group=2)).conv_plans["bconv"]
    assert plan.grouped and not plan.depthwise and not plan.binary and plan.binarized_from is not None
    assert plan.reason == GROUPED_BINARY_REASON


def test_binary_filter_check_matches_lce_tolerance():
    w = np.where(np.random.default_rng(0).random((4, 3, 3, 3)) < 0.5, -1.0, 1.0) * np.array([1, -2, 0.5, 3])[:, None, None, None]
    assert np.allclose(binary_filter_scale(w), [1, 2, 0.5, 3])
    w2 = w.copy()
    w2[1, 0, 0, 1] *= 1.004
    assert binary_filter_scale(w2) is not None
    w2[1, 0, 0, 1] *= 1.01
    assert binary_filter_scale(w2) is None
    w2 = w.copy()
    w2[0] = 0
    assert binary_filter_scale(w2) is None


def test_dynamic_batch_is_fixed_to_one(tmp_path):
    graph = load_graph(_small_binary(tmp_path, dims=("batch", 8, 6, 6)))
    assert graph.input_shape == (1, 8, 6, 6)


def test_dynamic_spatial_dim_is_a_clear_error(tmp_path):
    with pytest.raises(OnnxLoadError, match=r"input 'image' has a dynamic dimension 2 \('height'\)"):
        load_graph(_small_binary(tmp_path, dims=(1, 8, "height", 6)))


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "text", "truncated"])
def test_unreadable_files_are_clear_errors(tmp_path, kind):
    good = _small_binary(tmp_path).read_bytes()
    path = tmp_path / "bad.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    with pytest.raises(OnnxLoadError) as info:
        load_graph(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_custom_domain_op_is_unsupported(tmp_path):
    net = OnnxNet((1, 3, 4, 4))
    y = net.op("Flatten", [net.input])
    model = net.model(y, output_shape=[1, 48])
    model.graph.node[0].domain = "com.example"
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedOpError, match="custom-domain"):
        load_graph(tmp_path / "m.onnx")


def test_shape_arithmetic_is_folded(tmp_path):
    """``x.view(x.size(0), -1)`` as the TorchScript exporter writes it: Shape -> Gather -> Unsqueeze -> Concat."""
    net = OnnxNet((1, 3, 4, 4))
    shape = net.op("Shape", [net.input])
    batch = net.op("Unsqueeze", [net.op("Gather", [shape, net.const(0, np.int64)], axis=0), net.const([0], np.int64)])
    target = net.op("Concat", [batch, net.const([-1], np.int64)], axis=0)
    y = net.op("Reshape", [net.input, target])
    graph = load_graph(net.save(tmp_path / "m.onnx", y, output_shape=[1, 48]))
    assert [n.op_type for n in graph.nodes] == ["Reshape"]
    assert graph.shapes[y] == (1, 48)


def _weak_lce_same(size, kernel, stride, before, after):
    """LCE's IsSamePadding1D (larq_compute_engine/mlir/transforms/padding.h): ignores the kernel."""
    total = before + after
    return (padding.output_size(size, kernel, stride, before, after) == -(-size // stride)
            and before == total // 2 and after == (total + 1) // 2)


def _windows(x, kernel, stride, before, after, value):
    padded = np.concatenate([np.full(before, value), x, np.full(after, value)])
    n = padding.output_size(len(x), kernel, stride, before, after)
    return np.array([padded[i * stride:i * stride + kernel] for i in range(n)])


def test_padding_arithmetic_and_lce_fusion_is_exact_after_canonicalisation():
    rng = np.random.default_rng(0)
    for size, kernel, stride, before, after in itertools.product(range(1, 13), range(1, 8), (1, 2, 3),
                                                                 range(4), range(4)):
        if size + before + after < kernel:
            continue
        x = rng.normal(size=size)
        b, a = padding.canonical_pads(size, kernel, stride, before, after)
        assert np.array_equal(_windows(x, kernel, stride, before, after, 1.0), _windows(x, kernel, stride, b, a, 1.0))
        same_b, same_a = padding.same_pads(size, kernel, stride)
        if padding.is_same(size, kernel, stride, before, after):
            assert np.array_equal(_windows(x, kernel, stride, b, a, 0.0), _windows(x, kernel, stride, same_b, same_a, 0.0))
        # Whatever LCE fuses as SAME after canonicalisation really is SAME.
        if _weak_lce_same(size, kernel, stride, b, a):
            assert (b, a) == (same_b, same_a), (size, kernel, stride, before, after)


def test_the_miscompiled_configuration_passes_lces_check_untrimmed():
    """k=3, stride 2, input 8, pads (1, 1): LCE's check passes but SAME would pad (0, 1)."""
    assert _weak_lce_same(8, 3, 2, 1, 1) and padding.same_pads(8, 3, 2) == (0, 1)
    assert padding.canonical_pads(8, 3, 2, 1, 1) == (1, 0) and not _weak_lce_same(8, 3, 2, 1, 0)
