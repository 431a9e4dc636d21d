"""Integer grids written in ONNX as QuantizeLinear / DequantizeLinear ("QDQ"), found whatever produced them.

Two forms are recognised (``analyse``, run by the loader after constant folding):

- a **weight grid**: a constant produced by ``DequantizeLinear`` of constant integer codes (the
  loader folds it and keeps its codes and scales), read as the weight of a Conv. Kept when the
  int8 model can honour it exactly: a regular conv (per-tensor or per-output-channel scale) or a
  depthwise conv with one scale; zero points must be 0 and codes within [-127, 127] (TFLite's
  symmetric int8 weights);
- an **activation quantize point**: ``DequantizeLinear(QuantizeLinear(x, s, z), s, z)`` with constant
  scalar ``s`` and ``z``: ``x -> s * (clip(round(x / s) + z, q_min, q_max) - z)``.

A ``BatchNormalization`` that is the only consumer of a grid conv (groups 1) is folded into it: per
output channel ``m = gamma / sqrt(var + eps)``, the codes keep their magnitude (the sign of ``m`` goes
into them), the scale becomes ``|m| s`` and the bias ``(b - mean) m + beta``. How the builder lowers
both forms: ``convert.qdq_layers`` and ``convert.int8_qat``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from bitat_edge.precision import FLOAT, Precision

if TYPE_CHECKING:
    from convert.onnx_graph import Graph

WEIGHT_CODE_MAX = 127
INT8_BITS = 8


@dataclass(frozen=True)
class Dequantized:
    """A folded ``DequantizeLinear`` of constants: its integer codes (input 0), scale, zero point and axis."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int

    @classmethod
    def of(cls, node: onnx.NodeProto, inputs: list[np.ndarray | None]) -> Dequantized | None:
        """The record of a DequantizeLinear node folded from ``inputs`` (None if it has no integer codes)."""
        codes, scale = inputs[0], inputs[1]
        if codes is None or scale is None or codes.dtype.kind not in "iu":
            return None
        zero = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros((), dtype=codes.dtype)
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
        return cls(codes.astype(np.int64), np.asarray(scale, dtype=np.float64), zero.astype(np.int64), int(axis))


@dataclass(frozen=True)
class WeightGrid:
    """A conv weight ``scale[o] * codes`` with integer ``codes`` (shape of the weight, OIHW) and one
    positive scale per output channel (equal ones when the grid is per tensor)."""

    codes: np.ndarray
    scale: np.ndarray

    @property
    def per_tensor(self) -> bool:
        return bool(np.all(self.scale == self.scale[0]))

    @property
    def bits(self) -> int:
        """The bits of the widest output channel's grid: levels between its smallest and largest code
        at the step of the codes it uses (odd codes +/-1, +/-3 are 4 levels: 2 bits)."""
        widest = 1
        for row in self.codes.reshape(len(self.codes), -1):
            used = np.unique(row).astype(np.int64)
            if len(used) > 1:
                step = int(np.gcd.reduce(np.diff(used)))
                widest = max(widest, (int(used[-1]) - int(used[0])) // step + 1)
        return max(1, math.ceil(math.log2(widest)))


@dataclass(frozen=True)
class QuantizePoint:
    """An activation quantize point: ``source`` rounded onto ``scale * (q - zero_point)``, q in [q_min, q_max]."""

    source: str
    scale: float
    zero_point: int
    q_min: int
    q_max: int

    @property
    def range(self) -> tuple[float, float]:
        """The smallest and largest representable value."""
        return (self.q_min - self.zero_point) * self.scale, (self.q_max - self.zero_point) * self.scale


def _grid_of(record: Dequantized, weight: np.ndarray, depthwise: bool) -> WeightGrid | None:
    """The grid of a conv weight dequantized by ``record``, if the int8 model can keep it exactly."""
    if np.any(record.zero_point != 0) or record.codes.shape != weight.shape:
        return None
    scale = record.scale.ravel()
    if scale.size == 1:
        scale = np.full(weight.shape[0], scale[0])
    elif scale.size != weight.shape[0] or record.axis % weight.ndim != 0 or depthwise:
        return None
    if np.any(scale <= 0) or np.abs(record.codes).max() > WEIGHT_CODE_MAX:
        return None
    return WeightGrid(record.codes.astype(np.float64), scale)


def _scalar(graph: Graph, tensor: str) -> float | None:
    value = graph.consts.get(tensor)
    return None if value is None or value.size != 1 else float(value.ravel()[0])


def _quantize_point(graph: Graph, dq: onnx.NodeProto) -> tuple[QuantizePoint, onnx.NodeProto] | None:
    q = graph.producer(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear" or q.input[0] in graph.consts:
        return None
    zero_tensor = q.input[2] if len(q.input) > 2 and q.input[2] else None
    zero_value = graph.consts.get(zero_tensor) if zero_tensor else np.zeros((), np.uint8)
    dq_zero = dq.input[2] if len(dq.input) > 2 and dq.input[2] else None
    scale = _scalar(graph, q.input[1])
    if (zero_value is None or zero_value.size != 1 or zero_value.dtype not in (np.int8, np.uint8) or scale is None
            or scale <= 0 or _scalar(graph, dq.input[1]) != scale
            or (dq_zero is not None and _scalar(graph, dq_zero) != float(zero_value.ravel()[0]))
            or len(graph.consumers(q.output[0])) != 1):
        return None
    info = np.iinfo(zero_value.dtype)
    return QuantizePoint(q.input[0], scale, int(zero_value.ravel()[0]), int(info.min), int(info.max)), q


def _fold_batchnorm(graph: Graph, conv: onnx.NodeProto) -> None:
    """Fold the BatchNormalization that alone reads ``conv``'s output into ``conv`` (module docstring)."""
    consumers = graph.consumers(conv.output[0])
    if len(consumers) != 1 or consumers[0].op_type != "BatchNormalization":
        return
    bn = consumers[0]
    attributes = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
    if attributes.get("training_mode", 0) or not all(t in graph.consts for t in bn.input[1:5]):
        return
    gamma, beta, mean, var = (graph.consts[t].astype(np.float64) for t in bn.input[1:5])
    m = gamma / np.sqrt(var + float(attributes.get("epsilon", 1e-5)))
    if np.any(m == 0):
        return
    grid = graph.weight_grids[conv.input[1]]
    weight = graph.consts[conv.input[1]].astype(np.float64)
    bias = graph.consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2 and conv.input[2] else 0.0
    shape = (-1,) + (1,) * (weight.ndim - 1)
    weight_name, bias_name = f"{conv.input[1]}__bn_folded", f"{bn.name}__bias"
    graph.consts[weight_name] = (weight * m.reshape(shape)).astype(np.float32)
    graph.consts[bias_name] = ((bias - mean) * m + beta).astype(np.float32)
    graph.weight_grids[weight_name] = WeightGrid(grid.codes * np.sign(m).reshape(shape), grid.scale * np.abs(m))
    conv.input[1] = weight_name
    if len(conv.input) > 2:
        conv.input[2] = bias_name
    else:
        conv.input.append(bias_name)
    conv.output[0] = bn.output[0]
    graph.nodes.remove(bn)


def analyse(graph: Graph, dequantized: dict[str, Dequantized]) -> None:
    """Find the weight grids and activation quantize points of ``graph`` and fold BatchNorms into grid convs."""
    for node in graph.nodes:
        if node.op_type != "Conv" or node.input[1] not in dequantized:
            continue
        weight = graph.consts.get(node.input[1])
        if weight is None or weight.ndim != 4:
            continue
        groups = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        grid = _grid_of(dequantized[node.input[1]], weight, depthwise=groups > 1)
        if grid is not None:
            graph.weight_grids[node.input[1]] = grid
    for node in list(graph.nodes):
        if node.op_type == "Conv" and node.input[1] in graph.weight_grids and all(
                helper.get_attribute_value(a) == 1 for a in node.attribute if a.name == "group"):
            _fold_batchnorm(graph, node)
    read = {node.input[1] for node in graph.nodes if node.op_type == "Conv"}  # a folded conv reads a new weight
    for tensor in [t for t in graph.weight_grids if t not in read]:
        del graph.weight_grids[tensor]
    for node in graph.nodes:
        if node.op_type == "DequantizeLinear":
            found = _quantize_point(graph, node)
            if found is not None:
                graph.quantize_points[node.output[0]] = found[0]
                graph.absorbed_nodes.add(found[1].name)


def activation_bits(graph: Graph, tensor: str) -> int:
    """Bits of a conv input: the levels a quantize point can produce after the ``Clip`` before it
    (e.g. ``Clip(x, 0, 3 s)`` -> QDQ: 4 levels, 2 bits), else 8 (an int8 tensor) ."""
    point = graph.quantize_points.get(tensor)
    if point is None:
        return INT8_BITS
    low, high = point.range
    clip = graph.producer(point.source)
    if clip is not None and clip.op_type == "Clip":
        bounds = [_scalar(graph, clip.input[i]) if len(clip.input) > i and clip.input[i] else None for i in (1, 2)]
        low = max(low, bounds[0]) if bounds[0] is not None else low
        high = min(high, bounds[1]) if bounds[1] is not None else high
    levels = round((high - low) / point.scale) + 1
    return max(1, math.ceil(math.log2(max(levels, 2))))


def conv_precision(graph: Graph, weight: str, data: str) -> Precision:
    """A grid conv's weight and input bits; ``FLOAT`` for a conv without a weight grid."""
    grid = graph.weight_grids.get(weight)
    return FLOAT if grid is None else Precision(grid.bits, activation_bits(graph, data))
