"""Hand-built ONNX graphs (onnx.helper) for the convert tests: no torch, no trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class OnnxNet:
    """A tiny graph builder: each method adds nodes and returns the output tensor name."""

    def __init__(self, input_shape: tuple[int, ...], seed: int = 0, input_name: str = "image") -> None:
        self.input_shape = input_shape
        self.input = input_name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def _name(self, op: str) -> str:
        self.count += 1
        return f"{op.lower()}_{self.count}"

    def const(self, value: np.ndarray | float, dtype=np.float32) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attributes) -> str:
        name = name or self._name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name

    def binarize(self, x: str) -> str:
        """Where(GreaterOrEqual(x, 0), 1, -1): the form our exporter writes."""
        ge = self.op("GreaterOrEqual", [x, self.const(0.0)])
        return self.op("Where", [ge, self.const(1.0), self.const(-1.0)])

    def sign_sign(self, x: str, c: float = 0.1) -> str:
        """Sign(Sign(x) + c): Larq's binarizer form."""
        return self.op("Sign", [self.op("Add", [self.op("Sign", [x]), self.const(c)])])

    def binary_weight(self, cout: int, cin: int, k: int) -> np.ndarray:
        signs = np.where(self.rng.standard_normal((cout, cin, k, k)) >= 0, 1.0, -1.0)
        scale = self.rng.uniform(0.2, 1.5, (cout, 1, 1, 1)) * np.where(self.rng.random((cout, 1, 1, 1)) < 0.3, -1, 1)
        return (signs * scale).astype(np.float32)

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray | None = None, strides: int = 1,
             pads: int | tuple[int, int, int, int] = 0, group: int = 1, name: str | None = None, **extra) -> str:
        p = (pads,) * 4 if isinstance(pads, int) else pads
        inputs = [x, self.const(weight)] + ([self.const(bias)] if bias is not None else [])
        return self.op("Conv", inputs, name=name, kernel_shape=list(weight.shape[2:]), strides=[strides, strides],
                       pads=list(p), group=group, **extra)

    def pad(self, x: str, pads: tuple[int, int, int, int], value: float) -> str:
        top, bottom, left, right = pads
        return self.op("Pad", [x, self.const(np.array([0, 0, top, left, 0, 0, bottom, right]), np.int64),
                               self.const(value)], mode="constant")

    def bn(self, x: str, channels: int) -> str:
        r = self.rng
        return self.op("BatchNormalization", [
            x, self.const(r.uniform(0.5, 1.5, channels)), self.const(r.normal(0, 0.3, channels)),
            self.const(r.normal(0, 0.5, channels)), self.const(r.uniform(0.5, 2.0, channels))], epsilon=1e-5)

    def per_channel(self, channels: int, scale: float = 0.3) -> str:
        return self.const(self.rng.normal(0, scale, (1, channels, 1, 1)))

    def model(self, output: str, output_shape: list | None = None, opset: int = 17,
              input_shape: tuple | None = None) -> onnx.ModelProto:
        shape = list(input_shape or self.input_shape)
        graph = helper.make_graph(
            self.nodes, "net", [helper.make_tensor_value_info(self.input, TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")

    def save(self, path: Path, output: str, **kwargs) -> Path:
        onnx.save(self.model(output, **kwargs), str(path))
        return path
