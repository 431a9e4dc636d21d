"""Build a tf-keras (NHWC, batch 1) model from a ``Graph`` (ONNX, NCHW), one ONNX node at a time.

Binary layers are written as explicit ops LCE recognises: the binarizer as Larq's ``SteSign``
(``sign(sign(x) + 0.1)``, which LCE turns into ``LceQuantize``), +1 padding as ``PadV2`` on the
binarized tensor, and a VALID ``Conv2D`` whose kernel is the exported +/-scale weight, so LCE emits
``LceBconv2d`` and fuses the scale and a following BatchNorm. Every padding decision is made here
from ``convert.padding`` (see there for the LCE padding-fusion miscompile we route around).
Tensors of rank 4 are NHWC in Keras; rank-2 tensors are the same in both layouts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import larq as lq
import numpy as np
import onnx
import tensorflow as tf

from convert import padding
from convert.errors import ConvertError, UnsupportedOpError
from convert.keras_layers import Affine, Clip, Elementwise, HardSigmoid, HardSwish, Pad2D
from convert.onnx_graph import Graph, attrs, conv_geometry, onnx_pads, pad_node_spatial

# ONNX op -> the _Builder method that lowers it (convert/ops.py documents each).
HANDLERS = {
    "Conv": "conv", "BatchNormalization": "batchnorm", "Relu": "relu", "Clip": "clip", "PRelu": "prelu",
    "Sigmoid": "simple", "HardSigmoid": "hardsigmoid", "HardSwish": "simple", "Softmax": "softmax",
    "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise", "Concat": "concat",
    "MaxPool": "pool", "AveragePool": "pool", "GlobalAveragePool": "global_pool", "GlobalMaxPool": "global_pool",
    "Flatten": "flatten", "Reshape": "reshape", "Gemm": "gemm", "MatMul": "gemm", "Pad": "pad",
    "Identity": "passthrough", "Dropout": "passthrough", "Where": "binarizer", "Sign": "binarizer",
}
BINARY_DENSE_REASON = "binary dense layers stay float in LCE (LceQuantize -> LceDequantize -> FULLY_CONNECTED)"


@dataclass
class LayerRecord:
    """One weight layer of the built model, for the report."""

    name: str
    op: str  # conv | depthwise_conv | linear
    precision: str  # w1a1 | float
    binary_intent: bool
    params: int  # weights, at ``precision``
    macs: int
    bops: int
    bias_params: int = 0  # always float
    lowering: str = ""
    reason: str = ""


@dataclass
class BuiltModel:
    """The Keras model and what each weight layer became."""

    model: tf.keras.Model
    layers: list[LayerRecord] = field(default_factory=list)

    @property
    def binary_layers(self) -> list[LayerRecord]:
        return [r for r in self.layers if r.precision == "w1a1"]


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


class _Builder:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.t: dict[str, tf.Tensor] = {}
        self.records: list[LayerRecord] = []
        self.used_names: set[str] = set()

    # -- helpers -------------------------------------------------------------------------------
    def name(self, node: onnx.NodeProto, suffix: str = "") -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", node.name + suffix).strip("_.-") or node.op_type
        if not base[0].isalpha():
            base = "n_" + base
        name, i = base, 1
        while name in self.used_names:
            i += 1
            name = f"{base}_{i}"
        self.used_names.add(name)
        return name

    def get(self, node: onnx.NodeProto, index: int = 0) -> tf.Tensor:
        tensor = node.input[index]
        if tensor not in self.t:
            raise UnsupportedOpError(node.name, node.op_type, f"input '{tensor}' is not a computed tensor")
        return self.t[tensor]

    def const(self, node: onnx.NodeProto, index: int) -> np.ndarray:
        tensor = node.input[index]
        if tensor not in self.g.consts:
            raise UnsupportedOpError(node.name, node.op_type, f"input '{tensor}' must be a constant")
        return self.g.consts[tensor]

    def put(self, node: onnx.NodeProto, value: tf.Tensor) -> None:
        self.t[node.output[0]] = value

    # -- model ---------------------------------------------------------------------------------
    def build(self) -> BuiltModel:
        _, c, h, w = self.g.input_shape
        inp = tf.keras.Input(shape=(h, w, c), batch_size=1, name="input")
        self.t[self.g.input_name] = inp
        nodes = [n for n in self.g.nodes if n.name not in self.g.binarizer_nodes]
        for node in nodes:  # unknown ops first: they are the likeliest reason a foreign model fails
            if node.op_type not in HANDLERS:
                raise UnsupportedOpError(node.name, node.op_type, "this op is outside the supported op set")
        for node in nodes:
            getattr(self, HANDLERS[node.op_type])(node)
        out = self.t.get(self.g.output_name)
        if out is None or len(out.shape) != 2:
            shape = None if out is None else tuple(out.shape)
            raise ConvertError(f"{self.g.path}: the output '{self.g.output_name}' must be 2-D logits "
                               f"[1, classes], got shape {shape}")
        return BuiltModel(tf.keras.Model(inp, out, name="converted"), self.records)

    # -- binarizer, padding, convolution ------------------------------------------------------
    def binarizer(self, node: onnx.NodeProto) -> None:
        source = self.g.binarizers.get(node.output[0])
        if source is None:
            what = ("Where(GreaterOrEqual(x, 0), 1, -1)" if node.op_type == "Where" else "Sign(Sign(x) + c), 0 < c < 1")
            raise UnsupportedOpError(node.name, node.op_type, f"only the binarizer form {what} is supported")
        self.t[node.output[0]] = lq.quantizers.SteSign(name=self.name(node))(self.t[source])

    def pad(self, node: onnx.NodeProto) -> None:
        pads, value = pad_node_spatial(self.g, node)
        self.put(node, Pad2D(pads, value, name=self.name(node))(self.get(node)))

    def conv(self, node: onnx.NodeProto) -> None:
        plan = self.g.conv_plans[node.name]
        kernel, strides, dilations, groups = conv_geometry(self.g, node)
        if max(strides) > 1 and max(dilations) > 1:
            raise UnsupportedOpError(node.name, "Conv", "strides > 1 together with dilations > 1")
        weight = self.const(node, 1).astype(np.float32)
        bias = self.const(node, 2).astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        data = self.t[plan.data]
        _, h, w, cin = (int(d) for d in data.shape)
        kh, kw = (padding.effective_kernel(k, d) for k, d in zip(kernel, dilations, strict=True))
        top, bottom = padding.canonical_pads(h, kh, strides[0], plan.pads[0], plan.pads[1])
        left, right = padding.canonical_pads(w, kw, strides[1], plan.pads[2], plan.pads[3])
        pads = (top, bottom, left, right)
        same = (any(pads) and padding.is_same(h, kh, strides[0], top, bottom)
                and padding.is_same(w, kw, strides[1], left, right))
        mode = "valid"
        if plan.binary and any(pads) and plan.pad_value == 1.0:
            if same:  # LCE fuses PadV2(binarized, SAME, 1.0) -> bconv "same-one"
                data = Pad2D(pads, 1.0, name=self.name(node, "_pad1"))(data)
                lowering = "binary, +1 padding fused (same-one)"
            else:  # pad the pre-binarizer tensor with +1 (sgn(1) = +1), then a VALID bconv
                padded = Pad2D(pads, 1.0, name=self.name(node, "_prepad1"))(self.t[plan.binarized_from])
                data = lq.quantizers.SteSign(name=self.name(node, "_sign"))(padded)
                lowering = "binary, +1 padding applied before the binarizer, VALID"
        elif any(pads) and plan.pad_value == 0.0 and same:
            mode = "same"
            lowering = "binary, same-zero (LCE edge correction)" if plan.binary else "SAME"
        elif any(pads):
            data = Pad2D(pads, plan.pad_value, name=self.name(node, "_pad"))(data)
            lowering = f"explicit pad ({plan.pad_value:g}), VALID"
        else:
            lowering = "VALID"
        if plan.binary and "binary" not in lowering:
            lowering = "binary, " + lowering
        depthwise = groups > 1 and groups == cin
        if groups == 1:
            layer = tf.keras.layers.Conv2D(weight.shape[0], kernel, strides=strides, padding=mode,
                                           dilation_rate=dilations, use_bias=bias is not None, name=self.name(node))
            out = layer(data)
            layer.set_weights([weight.transpose(2, 3, 1, 0)] + ([bias] if bias is not None else []))
        elif depthwise:
            mult = weight.shape[0] // cin
            layer = tf.keras.layers.DepthwiseConv2D(kernel, strides=strides, padding=mode, depth_multiplier=mult,
                                                    dilation_rate=dilations, use_bias=bias is not None,
                                                    name=self.name(node))
            out = layer(data)
            dw = weight.reshape(cin, mult, kernel[0], kernel[1]).transpose(2, 3, 0, 1)
            layer.set_weights([dw] + ([bias] if bias is not None else []))
        else:
            raise UnsupportedOpError(node.name, "Conv", f"groups={groups} (only 1 or depthwise are supported)")
        _, oh, ow, oc = (int(d) for d in out.shape)
        macs = oh * ow * oc * weight.shape[1] * kernel[0] * kernel[1]
        self.records.append(LayerRecord(
            name=node.name, op="depthwise_conv" if depthwise else "conv",
            precision="w1a1" if plan.binary else "float", binary_intent=plan.binarized_from is not None,
            params=int(weight.size), bias_params=0 if bias is None else int(bias.size),
            macs=0 if plan.binary else macs, bops=macs if plan.binary else 0, lowering=lowering, reason=plan.reason))
        self.put(node, out)

    def gemm(self, node: onnx.NodeProto) -> None:
        x = self.get(node)
        if len(x.shape) != 2:
            raise UnsupportedOpError(node.name, node.op_type, "only 2-D inputs are supported (Flatten first)")
        a = attrs(node)
        if a.get("transA", 0):
            raise UnsupportedOpError(node.name, node.op_type, "transA=1 is not supported")
        weight = self.const(node, 1).astype(np.float32)
        if weight.ndim != 2:
            raise UnsupportedOpError(node.name, node.op_type, "the weight must be a 2-D constant")
        if a.get("transB", 0):
            weight = weight.T
        weight = weight * float(a.get("alpha", 1.0))
        bias = None
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(self.const(node, 2).astype(np.float32) * float(a.get("beta", 1.0)),
                                   (weight.shape[1],)).copy()
        layer = tf.keras.layers.Dense(weight.shape[1], use_bias=bias is not None, name=self.name(node))
        out = layer(x)
        layer.set_weights([weight] + ([bias] if bias is not None else []))
        intent = node.input[0] in self.g.binarizers
        self.records.append(LayerRecord(
            name=node.name, op="linear", precision="float", binary_intent=intent,
            params=int(weight.size), bias_params=0 if bias is None else int(bias.size), macs=int(weight.size), bops=0,
            lowering="FULLY_CONNECTED", reason=BINARY_DENSE_REASON if intent else ""))
        self.put(node, out)

    # -- element-wise and activations -----------------------------------------------------------
    def batchnorm(self, node: onnx.NodeProto) -> None:
        a = attrs(node)
        if a.get("training_mode", 0):
            raise UnsupportedOpError(node.name, node.op_type, "training_mode=1 (export the model in eval mode)")
        scale, shift, mean, var = (self.const(node, i).astype(np.float64) for i in range(1, 5))
        mul = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        add = shift - mean * mul
        self.put(node, Affine(mul, add, name=self.name(node))(self.get(node)))

    def relu(self, node: onnx.NodeProto) -> None:
        self.put(node, tf.keras.layers.ReLU(name=self.name(node))(self.get(node)))

    def clip(self, node: onnx.NodeProto) -> None:
        low = float(self.const(node, 1)) if len(node.input) > 1 and node.input[1] else -math.inf
        high = float(self.const(node, 2)) if len(node.input) > 2 and node.input[2] else math.inf
        x = self.get(node)
        if low == 0.0:
            layer = tf.keras.layers.ReLU(max_value=None if math.isinf(high) else high, name=self.name(node))
        else:
            layer = Clip(low, high, name=self.name(node))
        self.put(node, layer(x))

    def prelu(self, node: onnx.NodeProto) -> None:
        x = self.get(node)
        shape = tuple(int(d) for d in x.shape[1:])
        slope = _nhwc_const(self.const(node, 1), len(x.shape), node)
        if slope.ndim > len(shape):
            raise UnsupportedOpError(node.name, node.op_type, f"slope of shape {slope.shape} does not broadcast")
        slope = slope.reshape((1,) * (len(shape) - slope.ndim) + slope.shape)
        if any(s not in (1, d) for s, d in zip(slope.shape, shape, strict=True)):
            raise UnsupportedOpError(node.name, node.op_type, f"slope of shape {slope.shape} does not broadcast")
        # Share the axes the slope is constant over, so the flatbuffer stores [C], not [H, W, C].
        shared = [i + 1 for i, (s, d) in enumerate(zip(slope.shape, shape, strict=True)) if s == 1 and d != 1]
        layer = tf.keras.layers.PReLU(shared_axes=shared or None, name=self.name(node))
        out = layer(x)
        layer.set_weights([np.ascontiguousarray(slope, dtype=np.float32)])
        self.put(node, out)

    def simple(self, node: onnx.NodeProto) -> None:
        layer = (tf.keras.layers.Activation("sigmoid", name=self.name(node)) if node.op_type == "Sigmoid"
                 else HardSwish(name=self.name(node)))
        self.put(node, layer(self.get(node)))

    def hardsigmoid(self, node: onnx.NodeProto) -> None:
        a = attrs(node)
        self.put(node, HardSigmoid(a.get("alpha", 0.2), a.get("beta", 0.5), name=self.name(node))(self.get(node)))

    def softmax(self, node: onnx.NodeProto) -> None:
        x = self.get(node)
        if len(x.shape) != 2 or attrs(node).get("axis", -1) not in (-1, 1):
            raise UnsupportedOpError(node.name, node.op_type, "only a 2-D Softmax over the last axis is supported")
        self.put(node, tf.keras.layers.Softmax(name=self.name(node))(x))

    def elementwise(self, node: onnx.NodeProto) -> None:
        op = node.op_type.lower()
        const_idx = [i for i in (0, 1) if node.input[i] in self.g.consts]
        if len(const_idx) == 2:
            raise UnsupportedOpError(node.name, node.op_type, "both inputs are constants (not folded)")
        if const_idx:
            x = self.get(node, 1 - const_idx[0])
            c = _nhwc_const(self.g.consts[node.input[const_idx[0]]], len(x.shape), node)
            self.put(node, Elementwise(op, c, reverse=const_idx[0] == 0, name=self.name(node))(x))
            return
        x, y = self.get(node, 0), self.get(node, 1)
        if len(x.shape) != len(y.shape):
            raise UnsupportedOpError(node.name, node.op_type, "tensor operands of different ranks")
        self.put(node, Elementwise(op, name=self.name(node))([x, y]))

    def concat(self, node: onnx.NodeProto) -> None:
        xs = [self.get(node, i) for i in range(len(node.input))]
        rank = len(xs[0].shape)
        axis = attrs(node).get("axis", 1) % rank
        if axis == 0:
            raise UnsupportedOpError(node.name, node.op_type, "concatenation over the batch axis")
        keras_axis = {1: 3, 2: 1, 3: 2}[axis] if rank == 4 else axis
        self.put(node, tf.keras.layers.Concatenate(axis=keras_axis, name=self.name(node))(xs))

    # -- pooling and shape ops -------------------------------------------------------------------
    def pool(self, node: onnx.NodeProto) -> None:
        a = attrs(node)
        x = self.get(node)
        kernel = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", (1, 1)))
        if tuple(a.get("dilations", (1, 1))) != (1, 1) or len(kernel) != 2:
            raise UnsupportedOpError(node.name, node.op_type, "only 2-D pooling without dilation is supported")
        pads = self._pool_pads(node, kernel, strides)
        _, h, w, _ = (int(d) for d in x.shape)
        if not any(pads):
            mode = "valid"
        elif (padding.is_same(h, kernel[0], strides[0], pads[0], pads[1])
              and padding.is_same(w, kernel[1], strides[1], pads[2], pads[3])
              and not (node.op_type == "AveragePool" and a.get("count_include_pad", 0))):
            mode = "same"
        else:
            raise UnsupportedOpError(node.name, node.op_type, f"padding {pads} is neither none nor TF-SAME-shaped")
        cls = tf.keras.layers.MaxPool2D if node.op_type == "MaxPool" else tf.keras.layers.AveragePooling2D
        self.put(node, cls(kernel, strides, padding=mode, name=self.name(node))(x))

    def _pool_pads(self, node: onnx.NodeProto, kernel: tuple, strides: tuple) -> tuple[int, int, int, int]:
        pads = onnx_pads(self.g, node, kernel, strides, (1, 1))
        if attrs(node).get("ceil_mode", 0):
            _, _, h, w = self.g.shapes[node.input[0]]
            for size, k, s, b, e in ((h, kernel[0], strides[0], pads[0], pads[1]),
                                     (w, kernel[1], strides[1], pads[2], pads[3])):
                if (size + b + e - k) % s:
                    raise UnsupportedOpError(node.name, node.op_type, "ceil_mode=1 changes the output size here")
        return pads

    def global_pool(self, node: onnx.NodeProto) -> None:
        cls = (tf.keras.layers.GlobalAveragePooling2D if node.op_type == "GlobalAveragePool"
               else tf.keras.layers.GlobalMaxPooling2D)
        self.put(node, cls(keepdims=True, name=self.name(node))(self.get(node)))

    def _to_2d(self, node: onnx.NodeProto, x: tf.Tensor) -> tf.Tensor:
        """NCHW flattening order: transpose NHWC back to NCHW first unless H = W = 1."""
        _, h, w, c = (int(d) for d in x.shape)
        if h * w != 1:
            x = tf.keras.layers.Permute((3, 1, 2), name=self.name(node, "_nchw"))(x)
        return tf.keras.layers.Reshape((c * h * w,), name=self.name(node))(x)

    def flatten(self, node: onnx.NodeProto) -> None:
        x = self.get(node)
        if attrs(node).get("axis", 1) != 1:
            raise UnsupportedOpError(node.name, node.op_type, "only axis=1 is supported")
        self.put(node, self._to_2d(node, x) if len(x.shape) == 4 else x)

    def reshape(self, node: onnx.NodeProto) -> None:
        x = self.get(node)
        target = self.g.shapes.get(node.output[0])
        if target is None:
            raise UnsupportedOpError(node.name, node.op_type, "its output shape could not be inferred statically")
        if len(x.shape) == 4 and len(target) == 2:
            self.put(node, self._to_2d(node, x))
        elif len(x.shape) == 2 and len(target) == 2:
            self.put(node, tf.keras.layers.Reshape(target[1:], name=self.name(node))(x))
        elif len(x.shape) == 2 and len(target) == 4:
            _, c, h, w = target
            y = tf.keras.layers.Reshape((c, h, w), name=self.name(node, "_nchw"))(x)
            self.put(node, tf.keras.layers.Permute((2, 3, 1), name=self.name(node))(y))
        else:
            raise UnsupportedOpError(node.name, node.op_type, f"reshape from rank {len(x.shape)} to {target}")

    def passthrough(self, node: onnx.NodeProto) -> None:
        self.put(node, self.get(node))


def build_keras_model(graph: Graph) -> BuiltModel:
    """The tf-keras model computing ``graph`` on NHWC input, and a record per weight layer."""
    return _Builder(graph).build()
