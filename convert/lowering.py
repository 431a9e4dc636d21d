"""One handler per supported ONNX op, each registered in ``LOWERINGS`` with its documentation line.

``bitat-edge convert ops``, ``SUPPORTED_OPS`` and the table in ``convert/SUPPORTED_OPS.md`` are
generated from ``LOWERINGS``. Binary layers are written as explicit ops LCE recognises: the binarizer
as Larq's ``SteSign`` (``sign(sign(x) + 0.1)``, which LCE turns into ``LceQuantize``), +1 padding as
``PadV2``, and a conv whose kernel is the exported +/-scale weight, so LCE emits ``LceBconv2d`` and
fuses the scale and a following BatchNorm. How each Conv is padded is decided by its ``ConvPlan``
(``onnx_graph.plan_conv``); the Conv handler only executes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import onnx

from bitat_edge.precision import FLOAT, W1A1
from convert import binarizers, padding, qonnx, simplify, zero_pad
from convert.deferred import Deferred
from convert.errors import UnsupportedOpError
from convert.onnx_graph import LOAD_RULES, ConvLowering, attrs, onnx_pads, pad_node_spatial
from convert.ops import Handler, OpRegistry
from convert.qdq import conv_precision

if TYPE_CHECKING:
    import larq as lq
    import tensorflow as tf

    from convert.keras_builder import Builder
    from convert.keras_layers import (
        AddConstantUnfused,
        Affine,
        Clip,
        Elementwise,
        GroupedConv2D,
        HardSigmoid,
        HardSwish,
        Pad2D,
    )
    from convert.qdq_layers import FakeQuant, GridConv2D, PReLU16, QuantizeFloat, int16_grid_of
else:  # imported by the first handler that runs: listing the op set needs no TensorFlow (convert.deferred)
    tf, lq = Deferred("tensorflow"), Deferred("larq")
    AddConstantUnfused, Affine, Clip, Elementwise, GroupedConv2D, HardSigmoid, HardSwish, Pad2D = (
        Deferred("convert.keras_layers", name) for name in ("AddConstantUnfused", "Affine", "Clip", "Elementwise",
                                                            "GroupedConv2D", "HardSigmoid", "HardSwish", "Pad2D"))
    FakeQuant, GridConv2D, PReLU16, QuantizeFloat, int16_grid_of = (
        Deferred("convert.qdq_layers", name)
        for name in ("FakeQuant", "GridConv2D", "PReLU16", "QuantizeFloat", "int16_grid_of"))

BINARY_DENSE_REASON = "binary dense layers stay float in LCE (LceQuantize -> LceDequantize -> FULLY_CONNECTED)"

LOWERINGS = OpRegistry()
"""Every supported ONNX op: its handler and its documentation line."""


def _nhwc_const(value: np.ndarray, rank: int, node: onnx.NodeProto) -> np.ndarray:
    """An ONNX constant broadcastable against an NCHW tensor, reordered to broadcast against NHWC."""
    value = np.asarray(value, dtype=np.float32)
    if rank != 4:
        return value
    if value.ndim > 4:
        raise UnsupportedOpError(node.name, node.op_type, f"a constant of rank {value.ndim} cannot broadcast to 4-D")
    value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(0, 2, 3, 1)
    # Drop leading 1s: the same broadcast, and LCE fuses a per-channel constant into a bconv's
    # post_activation_bias/multiplier only correctly when it is 1-D (a [1,1,1,C] one is fused but
    # then fails in the kernel's Prepare: "NumDimensions(post_activation_bias) != 1").
    while value.ndim > 1 and value.shape[0] == 1:
        value = value[0]
    return value


# -- convolution ------------------------------------------------------------------------------------

@LOWERINGS.lowers("Conv", accepts="2-D, constant weight and bias, any kernel, stride, `pads`/`auto_pad`, dilation "
                  "(not stride > 1 together with dilation > 1); any `group`",
                  becomes='`Conv2D` / `DepthwiseConv2D`; grouped: one float `Conv2D` per group on its channels, '
                          'concatenated; see "Binary convolutions"')
def _conv(b: Builder, node: onnx.NodeProto) -> None:
    plan = b.graph.conv_plans[node.name]
    g = plan.geometry
    weight = b.const(node, 1).astype(np.float32)
    bias = b.const(node, 2).astype(np.float32) if b.has_input(node, 2) else None
    grid = b.graph.weight_grids.get(node.input[1])
    x = b.tensor(node, plan.reads)
    if plan.lowering.explicit_pad:
        x = Pad2D(plan.pads, plan.pad_value, name=b.name(node, "_pad"))(x)
        x = b.same_range(plan.reads, x, node.name + "_pad")
    if plan.lowering is ConvLowering.ONE_BEFORE_SIGN:  # binarize the +1-padded pre-binarizer tensor
        x = lq.quantizers.SteSign(name=b.name(node, "_sign"))(x)
    common = dict(strides=g.strides, padding=plan.padding_mode, dilation_rate=g.dilations,
                  use_bias=bias is not None, name=b.name(node))
    extra = [] if bias is None else [bias]
    cin = int(x.shape[-1])
    kernel = (weight.reshape(cin, weight.shape[0] // cin, *g.kernel).transpose(2, 3, 0, 1) if plan.depthwise
              else weight.transpose(2, 3, 1, 0))
    if plan.grouped:
        out = GroupedConv2D(kernel, bias, g.groups, g.strides, plan.padding_mode, g.dilations, name=common["name"])(x)
    elif grid is not None and b.quantization_aware:  # the int8 model keeps the weight grid exactly
        float_bias = (b.activation_bits == 16 and bias is not None and node.output[0] in b.ranges
                      and not plan.zero_correction)
        out = GridConv2D(kernel, None if float_bias else bias, grid.scale, strides=g.strides,
                         padding=plan.padding_mode, dilations=g.dilations, depthwise=plan.depthwise,
                         name=common["name"])(x)
        if float_bias:  # 16x8: the int16 sum of products, then the bias in float (module docstring of int8_qat)
            low, high = b.ranges[node.output[0]]
            margin = float(np.abs(bias).max())
            out = FakeQuant(low - margin, high + margin, bits=16, name=b.name(node, "_products"))(out)
            b.tensors[node.output[0]] = Elementwise(tf.add, bias, name=b.name(node, "_bias"))(out)
            _record_conv(b, node, plan, weight, bias, out)
            return
    else:
        if plan.depthwise:
            layer = tf.keras.layers.DepthwiseConv2D(g.kernel, depth_multiplier=weight.shape[0] // cin, **common)
        else:
            layer = tf.keras.layers.Conv2D(weight.shape[0], g.kernel, **common)
        out = layer(x)
        layer.set_weights([kernel, *extra])
    if plan.zero_correction:
        correction = zero_pad.edge_correction(weight, g, plan.pads, b.graph.shapes[plan.data][2:])
        out = AddConstantUnfused(-correction, name=b.name(node, "_zero_pad"))(out)
    _record_conv(b, node, plan, weight, bias, out)
    b.put(node, out)


def _record_conv(b: Builder, node: onnx.NodeProto, plan, weight: np.ndarray, bias: np.ndarray | None,
                 out: tf.Tensor) -> None:
    g = plan.geometry
    _, oh, ow, oc = (int(d) for d in out.shape)
    b.record(node, "depthwise_conv" if plan.depthwise else "conv",
             W1A1 if plan.binary else conv_precision(b.graph, node.input[1], plan.data),
             binary_intent=plan.binary_intent, rewrites=plan.rewrites, params=int(weight.size),
             bias_params=0 if bias is None else int(bias.size),
             macs=oh * ow * oc * weight.shape[1] * g.kernel[0] * g.kernel[1], lowering=plan.description,
             reason=plan.reason)


# -- normalization and activations ----------------------------------------------------------------

@LOWERINGS.lowers("BatchNormalization", accepts="inference mode, constant statistics",
                  becomes="per-channel `Mul` + `Add` (LCE fuses them into a bconv)")
def _batchnorm(b: Builder, node: onnx.NodeProto) -> None:
    a = attrs(node)
    if a.get("training_mode", 0):
        raise UnsupportedOpError(node.name, node.op_type, "training_mode=1 (export the model in eval mode)")
    scale, shift, mean, var = (b.const(node, i).astype(np.float64) for i in range(1, 5))
    mul = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
    b.apply(node, Affine(mul, shift - mean * mul, name=b.name(node)))


@LOWERINGS.lowers("Relu", becomes="`ReLU`")
def _relu(b: Builder, node: onnx.NodeProto) -> None:
    b.apply(node, tf.keras.layers.ReLU(name=b.name(node)))


@LOWERINGS.lowers("Clip", accepts="constant min/max", becomes="min 0: `ReLU(max_value)` (ReLU6); otherwise, and "
                                                              "in a quantization-aware int8 model, `clip_by_value`")
def _clip(b: Builder, node: onnx.NodeProto) -> None:
    low = float(b.const(node, 1)) if b.has_input(node, 1) else -math.inf
    high = float(b.const(node, 2)) if b.has_input(node, 2) else math.inf
    # Keras' ReLU(max_value) is three TF ops, one FakeQuant range cannot cover: int8 needs clip_by_value.
    if low == 0.0 and not b.quantization_aware:
        b.apply(node, tf.keras.layers.ReLU(max_value=None if math.isinf(high) else high, name=b.name(node)))
    else:
        b.apply(node, Clip(low, high, name=b.name(node)))


@LOWERINGS.lowers("PRelu", accepts="constant slope (per channel or scalar)", becomes="`PReLU`")
def _prelu(b: Builder, node: onnx.NodeProto) -> None:
    x = b.get(node)
    shape = tuple(int(d) for d in x.shape[1:])
    slope = _nhwc_const(b.const(node, 1), len(x.shape), node)
    if slope.ndim > len(shape):
        raise UnsupportedOpError(node.name, node.op_type, f"slope of shape {slope.shape} does not broadcast")
    slope = slope.reshape((1,) * (len(shape) - slope.ndim) + slope.shape)
    if any(s not in (1, d) for s, d in zip(slope.shape, shape, strict=True)):
        raise UnsupportedOpError(node.name, node.op_type, f"slope of shape {slope.shape} does not broadcast")
    if b.quantization_aware and b.activation_bits == 16:
        b.put(node, PReLU16(slope, name=b.name(node))(x))
        return
    # Share the axes the slope is constant over, so the flatbuffer stores [C], not [H, W, C].
    shared = [i + 1 for i, (s, d) in enumerate(zip(slope.shape, shape, strict=True)) if s == 1 and d != 1]
    layer = tf.keras.layers.PReLU(shared_axes=shared or None, name=b.name(node))
    out = layer(x)
    layer.set_weights([np.ascontiguousarray(slope, dtype=np.float32)])
    b.put(node, out)


@LOWERINGS.lowers("Sigmoid", becomes="sigmoid")
def _sigmoid(b: Builder, node: onnx.NodeProto) -> None:
    b.apply(node, tf.keras.layers.Activation("sigmoid", name=b.name(node)))


@LOWERINGS.lowers("HardSigmoid", accepts="`alpha`, `beta`", becomes="`clip(alpha * x + beta, 0, 1)`")
def _hardsigmoid(b: Builder, node: onnx.NodeProto) -> None:
    a = attrs(node)
    b.apply(node, HardSigmoid(a.get("alpha", 0.2), a.get("beta", 0.5), name=b.name(node)))


@LOWERINGS.lowers("HardSwish", becomes="`x * relu6(x + 3) / 6` (TFLite's HARD_SWISH pattern)")
def _hardswish(b: Builder, node: onnx.NodeProto) -> None:
    b.apply(node, HardSwish(name=b.name(node)))


@LOWERINGS.lowers("Softmax", accepts="2-D, last axis", becomes="`Softmax`")
def _softmax(b: Builder, node: onnx.NodeProto) -> None:
    if len(b.get(node).shape) != 2 or attrs(node).get("axis", -1) not in (-1, 1):
        raise UnsupportedOpError(node.name, node.op_type, "only a 2-D Softmax over the last axis is supported")
    b.apply(node, tf.keras.layers.Softmax(name=b.name(node)))


# -- element-wise arithmetic and concatenation ------------------------------------------------------

def _elementwise(name: str) -> Handler:
    """The handler of a binary element-wise op computing ``tf.<name>``."""

    def lower(b: Builder, node: onnx.NodeProto) -> None:
        fn = getattr(tf, name)
        const_idx = [i for i in (0, 1) if node.input[i] in b.graph.consts]
        if len(const_idx) == 2:
            raise UnsupportedOpError(node.name, node.op_type, "both inputs are constants (not folded)")
        if const_idx:
            x = b.get(node, 1 - const_idx[0])
            c = _nhwc_const(b.graph.consts[node.input[const_idx[0]]], len(x.shape), node)
            b.put(node, Elementwise(fn, c, reverse=const_idx[0] == 0, name=b.name(node))(x))
            return
        x, y = b.get(node, 0), b.get(node, 1)
        if len(x.shape) != len(y.shape):
            raise UnsupportedOpError(node.name, node.op_type, "tensor operands of different ranks")
        b.put(node, Elementwise(fn, name=b.name(node))([x, y]))

    return lower


_OPERANDS = "tensor with constant (NCHW broadcast), or two tensors of equal rank"
LOWERINGS.lowers("Add", accepts=_OPERANDS, becomes="`tf.add`")(_elementwise("add"))
LOWERINGS.lowers("Sub", accepts=f"{_OPERANDS}; `Sub(x, threshold)` before a binarizer is the learned threshold",
                 becomes="`tf.subtract`")(_elementwise("subtract"))
LOWERINGS.lowers("Mul", accepts=_OPERANDS, becomes="`tf.multiply`")(_elementwise("multiply"))
LOWERINGS.lowers("Div", accepts=_OPERANDS, becomes="`tf.divide`")(_elementwise("divide"))


@LOWERINGS.lowers("Concat", accepts="axis 1/2/3 of 4-D tensors, axis 1 of 2-D tensors",
                  becomes="`Concatenate` on the matching NHWC axis")
def _concat(b: Builder, node: onnx.NodeProto) -> None:
    xs = [b.get(node, i) for i in range(len(node.input))]
    rank = len(xs[0].shape)
    axis = attrs(node).get("axis", 1) % rank
    if axis == 0:
        raise UnsupportedOpError(node.name, node.op_type, "concatenation over the batch axis")
    keras_axis = {1: 3, 2: 1, 3: 2}[axis] if rank == 4 else axis
    b.put(node, tf.keras.layers.Concatenate(axis=keras_axis, name=b.name(node))(xs))


# -- pooling ----------------------------------------------------------------------------------------

PadLayer = Callable[[tuple[int, int, int, int], tuple[int, int]], "tf.keras.layers.Layer | None"]
"""An explicit pad before a VALID pool, given the canonical pads and the kernel; None where none is exact."""


def _pool(b: Builder, node: onnx.NodeProto, layer: type[tf.keras.layers.Layer], same_ok: bool,
          pad_layer: PadLayer | None) -> None:
    """A 2-D pool. Its canonical padding (``padding.canonical_pads``) becomes nothing, TF SAME (``same_ok``: when
    TF's SAME computes what ONNX does), or ``pad_layer``'s explicit pad before a VALID pool."""
    a = attrs(node)
    kernel = tuple(a["kernel_shape"])
    strides = tuple(a.get("strides", (1, 1)))
    if tuple(a.get("dilations", (1, 1))) != (1, 1) or len(kernel) != 2 or len(strides) != 2:
        raise UnsupportedOpError(node.name, node.op_type, "only 2-D pooling without dilation is supported")
    pads = onnx_pads(b.graph, node, kernel, strides, (1, 1))
    _, _, h, w = b.graph.shapes[node.input[0]]
    if a.get("ceil_mode", 0):
        for size, k, s, before, after in ((h, kernel[0], strides[0], *pads[:2]), (w, kernel[1], strides[1], *pads[2:])):
            if (size + before + after - k) % s:
                raise UnsupportedOpError(node.name, node.op_type, "ceil_mode=1 changes the output size here")
    pads = (*padding.canonical_pads(h, kernel[0], strides[0], *pads[:2]),
            *padding.canonical_pads(w, kernel[1], strides[1], *pads[2:]))
    x = b.get(node)
    mode = "valid"
    if any(pads) and same_ok and padding.is_same(h, kernel[0], strides[0], *pads[:2]) and \
            padding.is_same(w, kernel[1], strides[1], *pads[2:]):
        mode = "same"
    elif any(pads):
        pad = None if pad_layer is None else pad_layer(pads, (kernel[0], kernel[1]))
        if pad is None:
            raise UnsupportedOpError(node.name, node.op_type, f"padding {pads} is neither none, TF-SAME-shaped "
                                                              "nor one an explicit pad computes exactly")
        x = pad(x)
    b.put(node, layer(kernel, strides, padding=mode, name=b.name(node))(x))


_NON_NEGATIVE = ("Relu", "Sigmoid", "HardSigmoid", "Softmax")


def _max_pool_pad(b: Builder, node: onnx.NodeProto) -> PadLayer:
    """Padding a max pool never picks: zeros when its input cannot be negative (ReLU, ...: ResNet's stem),
    else the mirror image of the border (``SYMMETRIC``), which repeats values of the same window as long
    as each pad is at most half the kernel."""
    producer = b.graph.producer(node.input[0])
    non_negative = producer is not None and (producer.op_type in _NON_NEGATIVE or (
        producer.op_type == "Clip" and b.has_input(producer, 1) and producer.input[1] in b.graph.consts
        and float(np.min(b.graph.consts[producer.input[1]])) >= 0.0))

    def pad_layer(pads: tuple[int, int, int, int], kernel: tuple[int, int]) -> tf.keras.layers.Layer | None:
        if non_negative:
            return Pad2D(pads, 0.0, name=b.name(node, "_pad"))
        if all(2 * p <= k for p, k in zip(pads, (kernel[0], kernel[0], kernel[1], kernel[1]), strict=True)):
            return Pad2D(pads, 0.0, mode="SYMMETRIC", name=b.name(node, "_pad"))
        return None

    return pad_layer


@LOWERINGS.lowers("MaxPool", accepts="2-D, no dilation; any padding up to half the kernel; `ceil_mode` only where it "
                  "does not change the size", becomes="`MaxPool2D`: padding none or TF SAME, else an exact "
                  "explicit pad (zeros after ReLU/Clip(0, ...)/Sigmoid/HardSigmoid/Softmax, else mirrored "
                  "border values) and a VALID pool")
def _max_pool(b: Builder, node: onnx.NodeProto) -> None:
    _pool(b, node, tf.keras.layers.MaxPool2D, same_ok=True, pad_layer=_max_pool_pad(b, node))


@LOWERINGS.lowers("AveragePool", accepts="as `MaxPool`; `count_include_pad=0`: padding none or TF-SAME-shaped",
                  becomes="`AveragePooling2D` (`count_include_pad=1`: zero pad, VALID pool)")
def _average_pool(b: Builder, node: onnx.NodeProto) -> None:
    if attrs(node).get("count_include_pad", 0):  # TF's SAME averages over the window inside the input only
        _pool(b, node, tf.keras.layers.AveragePooling2D, same_ok=False,
              pad_layer=lambda pads, kernel: Pad2D(pads, 0.0, name=b.name(node, "_pad")))
    else:
        _pool(b, node, tf.keras.layers.AveragePooling2D, same_ok=True, pad_layer=None)


@LOWERINGS.lowers("GlobalAveragePool", becomes="global average pooling, keepdims")
def _global_average_pool(b: Builder, node: onnx.NodeProto) -> None:
    b.apply(node, tf.keras.layers.GlobalAveragePooling2D(keepdims=True, name=b.name(node)))


@LOWERINGS.lowers("GlobalMaxPool", becomes="global max pooling, keepdims")
def _global_max_pool(b: Builder, node: onnx.NodeProto) -> None:
    b.apply(node, tf.keras.layers.GlobalMaxPooling2D(keepdims=True, name=b.name(node)))


# -- shape ops --------------------------------------------------------------------------------------

def _to_2d(b: Builder, node: onnx.NodeProto, x: tf.Tensor) -> tf.Tensor:
    """NCHW flattening order: transpose NHWC back to NCHW first unless H = W = 1."""
    _, h, w, c = (int(d) for d in x.shape)
    if h * w != 1:
        x = tf.keras.layers.Permute((3, 1, 2), name=b.name(node, "_nchw"))(x)
    return tf.keras.layers.Reshape((c * h * w,), name=b.name(node))(x)


@LOWERINGS.lowers("Flatten", accepts="axis 1", becomes="NCHW-order flatten")
def _flatten(b: Builder, node: onnx.NodeProto) -> None:
    x = b.get(node)
    if attrs(node).get("axis", 1) != 1:
        raise UnsupportedOpError(node.name, node.op_type, "only axis=1 is supported")
    b.put(node, _to_2d(b, node, x) if len(x.shape) == 4 else x)


@LOWERINGS.lowers("Reshape", accepts="4-D -> [1, C·H·W], 2-D -> 2-D, 2-D -> [1, C, H, W] (target shape inferred "
                  "statically)", becomes="`Reshape` (+ `Permute`)")
def _reshape(b: Builder, node: onnx.NodeProto) -> None:
    x = b.get(node)
    target = b.graph.shapes.get(node.output[0])
    if target is None:
        raise UnsupportedOpError(node.name, node.op_type, "its output shape could not be inferred statically")
    if len(x.shape) == 4 and len(target) == 2:
        b.put(node, _to_2d(b, node, x))
    elif len(x.shape) == 2 and len(target) == 2:
        b.put(node, tf.keras.layers.Reshape(target[1:], name=b.name(node))(x))
    elif len(x.shape) == 2 and len(target) == 4:
        _, c, h, w = target
        y = tf.keras.layers.Reshape((c, h, w), name=b.name(node, "_nchw"))(x)
        b.put(node, tf.keras.layers.Permute((2, 3, 1), name=b.name(node))(y))
    else:
        raise UnsupportedOpError(node.name, node.op_type, f"reshape from rank {len(x.shape)} to {target}")


# -- dense ------------------------------------------------------------------------------------------

def _dense(b: Builder, node: onnx.NodeProto, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """A float ``Dense`` layer (in x out ``weight``) on the node's 2-D input."""
    x = b.get(node)
    if len(x.shape) != 2:
        raise UnsupportedOpError(node.name, node.op_type, "only 2-D inputs are supported (Flatten first)")
    layer = tf.keras.layers.Dense(weight.shape[1], use_bias=bias is not None, name=b.name(node))
    out = layer(x)
    layer.set_weights([weight] + ([bias] if bias is not None else []))
    intent = node.input[0] in b.graph.binarizers
    b.record(node, "linear", FLOAT, binary_intent=intent, params=int(weight.size),
             bias_params=0 if bias is None else int(bias.size), macs=int(weight.size), lowering="FULLY_CONNECTED",
             reason=BINARY_DENSE_REASON if intent else "")
    b.put(node, out)


def _matrix(b: Builder, node: onnx.NodeProto) -> np.ndarray:
    weight = b.const(node, 1).astype(np.float32)
    if weight.ndim != 2:
        raise UnsupportedOpError(node.name, node.op_type, "the weight must be a 2-D constant")
    return weight


@LOWERINGS.lowers("Gemm", accepts="2-D input, constant B, `transB`, `alpha`, `beta`, bias; `transA` = 0",
                  becomes="`Dense` (a binarized input stays float: LCE has no binary dense kernel)")
def _gemm(b: Builder, node: onnx.NodeProto) -> None:
    a = attrs(node)
    if a.get("transA", 0):
        raise UnsupportedOpError(node.name, node.op_type, "transA=1 is not supported")
    weight = _matrix(b, node)
    weight = (weight.T if a.get("transB", 0) else weight) * float(a.get("alpha", 1.0))
    bias = None
    if b.has_input(node, 2):
        bias = np.broadcast_to(b.const(node, 2).astype(np.float32) * float(a.get("beta", 1.0)),
                               (weight.shape[1],)).copy()
    _dense(b, node, weight, bias)


@LOWERINGS.lowers("MatMul", accepts="2-D input times a constant 2-D matrix", becomes="`Dense` without bias")
def _matmul(b: Builder, node: onnx.NodeProto) -> None:
    _dense(b, node, _matrix(b, node), None)


# -- padding ----------------------------------------------------------------------------------------

@LOWERINGS.lowers("Pad", accepts="mode constant, constant pads on H and W only, any value",
                  becomes="folded into the following `Conv` when possible, else `PadV2`")
def _pad(b: Builder, node: onnx.NodeProto) -> None:
    pads, value = pad_node_spatial(b.graph, node)
    b.apply(node, Pad2D(pads, value, name=b.name(node)))


# -- binarizer ----------------------------------------------------------------------------------------

@LOWERINGS.lowers("GreaterOrEqual", accepts=f"only inside the binarizer `{binarizers.WHERE_FORM}`",
                  becomes="part of Larq `SteSign` -> `LceQuantize`")
def _greater_or_equal(b: Builder, node: onnx.NodeProto) -> None:
    # A GreaterOrEqual that is part of a binarizer never gets here (the loader absorbs it).
    raise UnsupportedOpError(node.name, node.op_type, f"only the binarizer form {binarizers.WHERE_FORM} is supported")


def _ste_sign(b: Builder, node: onnx.NodeProto) -> None:
    """A binarizer: Larq's ``SteSign`` of its source tensor."""
    b.put(node, lq.quantizers.SteSign(name=b.name(node))(b.tensor(node, b.graph.binarizers[node.output[0]])))


@LOWERINGS.lowers("Where", accepts=f"only as the binarizer `{binarizers.WHERE_FORM}`",
                  becomes="Larq `SteSign` -> `LceQuantize`")
def _where(b: Builder, node: onnx.NodeProto) -> None:
    if node.output[0] not in b.graph.binarizers:
        raise UnsupportedOpError(node.name, node.op_type, f"only the binarizer form {binarizers.WHERE_FORM} is "
                                 "supported")
    _ste_sign(b, node)


@LOWERINGS.lowers("Sign", accepts=f"`{binarizers.SIGN_SIGN_FORM}`; a plain `Sign` (times a scalar constant) read only "
                  "by convolutions (through `Pad`s); any other plain `Sign`",
                  becomes="Larq `SteSign` -> `LceQuantize` (binarizer); otherwise a float `SIGN` (torch semantics)")
def _sign(b: Builder, node: onnx.NodeProto) -> None:
    if node.output[0] in b.graph.binarizers:
        _ste_sign(b, node)
    else:
        b.apply(node, tf.keras.layers.Activation(tf.math.sign, name=b.name(node)))


@LOWERINGS.lowers("Tanh", becomes="tanh")
def _tanh(b: Builder, node: onnx.NodeProto) -> None:
    b.apply(node, tf.keras.layers.Activation("tanh", name=b.name(node)))


@LOWERINGS.lowers("Softsign", becomes="softsign, `x / (1 + abs(x))`")
def _softsign(b: Builder, node: onnx.NodeProto) -> None:
    b.apply(node, tf.keras.layers.Activation("softsign", name=b.name(node)))


# -- integer grids (QDQ, see convert/qdq.py) ----------------------------------------------------------

@LOWERINGS.lowers("DequantizeLinear", accepts="of constant integer codes feeding a Conv (folded; its grid is kept), "
                  "or after `QuantizeLinear` of a tensor with the same constant scalar scale and zero point",
                  becomes="a quantize point: exact float rounding in the LCE / fp32 models, `FakeQuant` with "
                  "exactly its range in the int8 model (see \"Integer grids\")")
def _dequantize(b: Builder, node: onnx.NodeProto) -> None:
    point = b.graph.quantize_points.get(node.output[0])
    if point is None:
        raise UnsupportedOpError(node.name, node.op_type, "only QuantizeLinear -> DequantizeLinear of a tensor with "
                                 "one constant scale and zero point, or of constant codes, is supported")
    x = b.tensor(node, point.source)
    if not b.quantization_aware:
        b.put(node, QuantizeFloat(point, name=b.name(node))(x))
        return
    if b.activation_bits == 16:  # clipped to the point's range, rounded by an int16 tensor of step s
        x = Clip(*point.range, name=b.name(node, "_clip"))(x)
        b.put(node, FakeQuant(*int16_grid_of(point), bits=16, name=b.name(node))(x))
    else:
        b.put(node, FakeQuant(*point.range, name=b.name(node))(x))


@LOWERINGS.lowers("QuantizeLinear", accepts="of a constant (folded), or followed by its `DequantizeLinear`",
                  becomes="part of the quantize point")
def _quantize(b: Builder, node: onnx.NodeProto) -> None:
    # A QuantizeLinear that is part of a quantize point never gets here (the loader absorbs it).
    raise UnsupportedOpError(node.name, node.op_type, "only QuantizeLinear followed by its DequantizeLinear "
                             "(same scale and zero point) is supported")


@LOWERINGS.lowers("Identity", "Dropout", becomes="pass-through")
def _passthrough(b: Builder, node: onnx.NodeProto) -> None:
    b.put(node, b.get(node))


for _op, _accepts, _becomes in (*LOAD_RULES, qonnx.LOAD_RULE, simplify.LOAD_RULE):
    LOWERINGS.loaded(_op, _accepts, _becomes)

SUPPORTED_OPS: dict[str, str] = LOWERINGS.lines()
"""Op -> what is accepted and what it becomes (``bitat-edge convert ops``)."""


def handler_for(node: onnx.NodeProto) -> Handler:
    """The handler that lowers ``node``; ``UnsupportedOpError`` when its op is outside the op set (no TensorFlow
    needed: the pipeline checks every node before conversion starts)."""
    handler = LOWERINGS.handler(node.op_type)
    if handler is None:
        raise UnsupportedOpError(node.name, node.op_type, "this op is outside the supported op set")
    return handler
