"""Integer-grid (multi-bit) quantization: LSQ-style autograd helpers, the int8 deploy form, and
``GridConv2d``, the conv whose eval weight is written as an ONNX QuantizeLinear/DequantizeLinear pair.

A tensor on an integer grid is ``scale * (q - zero_point)`` with integer codes ``q``. In eval mode a
grid quantizer's output is written through ``torch.fake_quantize_per_tensor_affine`` with int8
codes, which the TorchScript exporter turns into ONNX ``QuantizeLinear`` -> ``DequantizeLinear``
(the "QDQ" form): the deploy stage then knows the grid exactly instead of guessing it from float
values. Codes must fit int8: weights in ``[-127, 127]`` (TFLite's symmetric weight range), activations
in ``[-128, 127]`` (zero point -128 for a grid that starts at 0).
"""

from __future__ import annotations

from typing import Any

import torch

from train.quant.layers import QuantConv2d
from train.quant.quantizers import Quantizer, register

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_CODE_MAX = 127  # int8 weights are symmetric: codes in [-127, 127]


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` in the forward pass, ``scale * grad`` in the backward pass (LSQ's step-size gradient scale)."""
    scaled = x * scale
    return (x - scaled).detach() + scaled


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even) with the identity gradient."""
    return (x.round() - x).detach() + x


def int8_qdq(x: torch.Tensor, scale: torch.Tensor, zero_point: int) -> torch.Tensor:
    """``scale * (clamp(round(x / scale) + zero_point, -128, 127) - zero_point)``, the ONNX QDQ pair.

    ``scale`` is a positive 0-d or 1-element tensor; the result is computed (and exported) by
    ``torch.fake_quantize_per_tensor_affine``, which rounds ``x * (1 / scale)`` half to even."""
    zp = torch.full((1,), zero_point, dtype=torch.int32, device=x.device)
    return torch.fake_quantize_per_tensor_affine(x, scale.reshape(1).float(), zp, INT8_MIN, INT8_MAX)


class GridWeightQuantizer(Quantizer):
    """Base of weight quantizers whose output lies on a symmetric integer grid ``step * m``.

    Subclasses give ``step()`` (the grid step, a positive scalar tensor); the eval output of the layer
    is then exported as QDQ with that scale and zero point 0 (see ``GridConv2d``)."""

    role = "weight"

    def step(self) -> torch.Tensor:
        raise NotImplementedError


@register
class FixedGridWeight(GridWeightQuantizer):
    """``s * clamp(round(w / s), -2^(b-1), 2^(b-1) - 1)`` with a fixed step ``s`` (a buffer, set by the
    method that fills the weight, e.g. QAF's ADMM); codes clipped to [-127, 127] at 8 bits. Training:
    round with the identity gradient inside the clip range, zero outside."""

    name = "fixed_grid_weight"

    def __init__(self, bits: int = 8, scale: float = 1.0) -> None:
        super().__init__(0)
        if not 2 <= bits <= 8:
            raise ValueError(f"quantizer {self.name!r}: bits must be 2..8, got {bits}")
        self.bits = int(bits)
        self.register_buffer("scale", torch.tensor(float(scale)))

    @property
    def precision(self) -> int:  # type: ignore[override]
        return self.bits

    @property
    def code_range(self) -> tuple[int, int]:
        """The smallest and largest code."""
        low, high = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return max(low, -WEIGHT_CODE_MAX), high

    def step(self) -> torch.Tensor:
        return self.scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        low, high = self.code_range
        return self.scale * round_ste(w / self.scale).clamp(low, high)

    def options(self) -> dict[str, Any]:
        return {"bits": self.bits, "scale": float(self.scale)}


class GridConv2d(QuantConv2d):
    """A ``QuantConv2d`` whose eval weight, when ``exports_weight_grid``, is written as
    ``int8_qdq(eval_weight, step, 0)``: the same values, exported as QuantizeLinear -> DequantizeLinear on
    the constant weight so the deploy stage sees the codes and the step."""

    @property
    def exports_weight_grid(self) -> bool:
        """The weight quantizer is on and puts the weight on an integer grid."""
        return self.quantize_weight and isinstance(self.weight_quantizer, GridWeightQuantizer)

    def quantized_weight(self) -> torch.Tensor:
        weight = super().quantized_weight()
        if self.training or not self.exports_weight_grid:
            return weight
        return int8_qdq(weight, self.weight_quantizer.step().detach(), 0)
