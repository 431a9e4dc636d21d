"""Build a tf-keras (NHWC, batch 1) model from a ``Graph`` (ONNX, NCHW), one ONNX node at a time.

``Builder`` holds the Keras tensors computed so far and the weight layers built; each node is
lowered by the handler ``convert.lowering.LOWERINGS`` registers for its op. Tensors of rank 4 are
NHWC in Keras; rank-2 tensors are the same in both layouts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import onnx
import tensorflow as tf

from bitat_edge.precision import W1A1, Precision
from convert.errors import ConvertError, UnsupportedOpError
from convert.lowering import handler_for
from convert.onnx_graph import Graph
from convert.qdq_layers import FakeQuant, int16_grid_of


@dataclass
class LayerRecord:
    """One weight layer of the built model, for the report."""

    name: str
    op: str  # conv | depthwise_conv | linear
    precision: Precision  # W1A1 (an LceBconv2d), a grid conv's bits (convert.qdq) or FLOAT
    binary_intent: bool
    params: int  # weights, at ``precision``
    macs: int  # float multiply-accumulates
    bops: int  # binary operations
    bias_params: int = 0  # always float
    lowering: str = ""
    reason: str = ""
    rewrites: tuple[str, ...] = ()  # what the simplification and binarizer recognition did for it


@dataclass
class BuiltModel:
    """The Keras model and what each weight layer became."""

    model: tf.keras.Model
    layers: list[LayerRecord] = field(default_factory=list)

    @property
    def binary_layers(self) -> list[LayerRecord]:
        return [r for r in self.layers if r.precision == W1A1]


class Builder:
    """The Keras tensors computed so far, by ONNX tensor name, and the weight layers built.

    With ``ranges`` (tensor -> calibrated min, max) the model is built quantization-aware for the int8
    converter: every tensor in ``ranges`` passes through a ``FakeQuant`` of its range with
    ``activation_bits`` (8, or 16 for TFLite's 16x8 mode), quantize points become ``FakeQuant`` and grid
    convs fake-quantize their kernels (``convert.int8_qat``)."""

    def __init__(self, graph: Graph, ranges: dict[str, tuple[float, float]] | None = None,
                 activation_bits: int = 8) -> None:
        self.graph = graph
        self.ranges = ranges
        self.activation_bits = activation_bits
        self.tensors: dict[str, tf.Tensor] = {}
        self.records: list[LayerRecord] = []
        self.used_names: set[str] = set()

    def name(self, node: onnx.NodeProto, suffix: str = "") -> str:
        """A unique Keras layer name derived from the node's."""
        return self.unique_name(node.name + suffix, node.op_type)

    def unique_name(self, text: str, fallback: str = "layer") -> str:
        """A unique Keras layer name derived from ``text``."""
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", text).strip("_.-") or fallback
        if not base[0].isalpha():
            base = "n_" + base
        name, i = base, 1
        while name in self.used_names:
            i += 1
            name = f"{base}_{i}"
        self.used_names.add(name)
        return name

    def get(self, node: onnx.NodeProto, index: int = 0) -> tf.Tensor:
        """The computed tensor at input ``index`` of ``node``."""
        return self.tensor(node, node.input[index])

    def tensor(self, node: onnx.NodeProto, name: str) -> tf.Tensor:
        """The computed tensor ``name`` that ``node`` reads."""
        if name not in self.tensors:
            raise UnsupportedOpError(node.name, node.op_type, f"input '{name}' is not a computed tensor")
        return self.tensors[name]

    def const(self, node: onnx.NodeProto, index: int) -> np.ndarray:
        """The constant at input ``index`` of ``node``."""
        tensor = node.input[index]
        if tensor not in self.graph.consts:
            raise UnsupportedOpError(node.name, node.op_type, f"input '{tensor}' must be a constant")
        return self.graph.consts[tensor]

    def has_input(self, node: onnx.NodeProto, index: int) -> bool:
        """Whether the optional input ``index`` is given."""
        return len(node.input) > index and bool(node.input[index])

    def record(self, node: onnx.NodeProto, op: str, precision: Precision, *, binary_intent: bool, params: int,
               bias_params: int, macs: int, lowering: str, reason: str = "", rewrites: tuple[str, ...] = ()) -> None:
        """Record a weight layer; ``macs`` counts all its multiply-accumulates, float or binary."""
        self.records.append(LayerRecord(
            name=node.name, op=op, precision=precision, binary_intent=binary_intent, params=params,
            macs=macs if precision.is_float else 0, bops=precision.binary_ops(macs), bias_params=bias_params,
            lowering=lowering, reason=reason, rewrites=rewrites))

    @property
    def quantization_aware(self) -> bool:
        """Whether this build is the int8 converter's quantization-aware model."""
        return self.ranges is not None

    def put(self, node: onnx.NodeProto, value: tf.Tensor) -> None:
        self.tensors[node.output[0]] = self._calibrated(node.output[0], value, node.name)

    def _calibrated(self, tensor: str, value: tf.Tensor, base: str) -> tf.Tensor:
        if self.ranges is None or tensor not in self.ranges:
            return value
        layer = FakeQuant(*self.ranges[tensor], bits=self.activation_bits, name=self.unique_name(f"{base}_range"))
        return layer(value)

    def same_range(self, tensor: str, value: tf.Tensor, base: str) -> tf.Tensor:
        """``value`` (a padded copy of ``tensor``) through ``tensor``'s int16 ``FakeQuant`` in a 16x8 build:
        the TFLite converter does not carry int16 through a ``PAD`` by itself."""
        if self.activation_bits != 16 or self.ranges is None:
            return value
        point = self.graph.quantize_points.get(tensor)
        limits = int16_grid_of(point) if point is not None else self.ranges.get(tensor)
        if limits is None:
            return value
        return FakeQuant(*limits, bits=16, name=self.unique_name(f"{base}_range"))(value)

    def apply(self, node: onnx.NodeProto, layer: tf.keras.layers.Layer) -> None:
        """The node's output is ``layer`` applied to its first input."""
        self.put(node, layer(self.get(node)))

    def build(self) -> BuiltModel:
        _, c, h, w = self.graph.input_shape
        inp = tf.keras.Input(shape=(h, w, c), batch_size=1, name="input")
        self.tensors[self.graph.input_name] = self._calibrated(self.graph.input_name, inp, "input")
        skipped = self.graph.binarizer_nodes | self.graph.absorbed_nodes
        nodes = [n for n in self.graph.nodes if n.name not in skipped]
        # Unknown ops first: they are the likeliest reason a foreign model fails.
        steps = [(node, handler_for(node)) for node in nodes]
        for node, handler in steps:
            handler(self, node)
        out = self.tensors.get(self.graph.output_name)
        if out is None or len(out.shape) != 2:
            shape = None if out is None else tuple(out.shape)
            raise ConvertError(f"{self.graph.path}: the output '{self.graph.output_name}' must be 2-D logits "
                               f"[1, classes], got shape {shape}")
        return BuiltModel(tf.keras.Model(inp, out, name="converted"), self.records)


def build_keras_model(graph: Graph, ranges: dict[str, tuple[float, float]] | None = None,
                      activation_bits: int = 8) -> BuiltModel:
    """The tf-keras model computing ``graph`` on NHWC input, and a record per weight layer (quantization-aware
    with ``ranges``, see ``Builder``)."""
    return Builder(graph, ranges, activation_bits).build()
