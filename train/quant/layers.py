"""``QuantConv2d``: a ``nn.Conv2d`` with optional input/weight quantizers and an explicit pad value.

With no quantizer active it runs ``nn.Conv2d.forward`` itself (bit-for-bit the float conv). With
the input quantizer active it pads the *binarized* input with ``pad_value`` (+1 by default, LCE's
fast "same-one" mode) and convolves with ``padding=0``. Which quantizers are active is switchable
at run time and is part of the module's ``state_dict`` (as extra state), so a checkpoint restores
a partly binarized model exactly. The eval-mode forward is what the exporter traces: ``sign(x - tau)``
-> pad with ``pad_value`` -> conv with the cached ``+/-alpha`` weight (``eval_weight``). In training,
``blend`` < 1 mixes the quantized weight and input with their float forms (a soft switch; not saved:
the method that sets it recomputes it from the step).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bitat_edge.precision import FLOAT_BITS, Precision
from train.quant.quantizers import Quantizer


def explicit_pads(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """The conv's padding as (left, right, top, bottom)."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
        return (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2)
    ph, pw = conv.padding
    return (pw, pw, ph, ph)


class QuantConv2d(nn.Conv2d):
    """``nn.Conv2d`` plus ``input_quantizer``, ``weight_quantizer`` and the binary-input ``pad_value``."""

    def __init__(
        self,
        *args: Any,
        input_quantizer: Quantizer | None = None,
        weight_quantizer: Quantizer | None = None,
        pad_value: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros" and input_quantizer is not None:
            raise ValueError(
                f"QuantConv2d: padding_mode {self.padding_mode!r} cannot be combined with an input quantizer; "
                "use padding_mode='zeros' (the binary input is padded with pad_value)"
            )
        self.input_quantizer = input_quantizer
        self.weight_quantizer = weight_quantizer
        self.pad_value = float(pad_value)
        self.quantize_input = input_quantizer is not None
        self.quantize_weight = weight_quantizer is not None
        # Training only: the share of the quantized form in the forward, t * quantized + (1 - t) * float,
        # for weights and inputs (soft stage transitions); 1 is the plain quantized forward.
        self.blend = 1.0
        # Eval mode convolves with this cached +/-alpha weight: a plain tensor, so ONNX export writes
        # it as a constant initializer (and folds the following BatchNorm into it).
        self.register_buffer("eval_weight", None, persistent=False)

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        *,
        input_quantizer: Quantizer | None = None,
        weight_quantizer: Quantizer | None = None,
        pad_value: float = 1.0,
    ) -> QuantConv2d:
        """A ``QuantConv2d`` sharing ``conv``'s parameters (same tensors, same device and dtype)."""
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            input_quantizer=input_quantizer,
            weight_quantizer=weight_quantizer,
            pad_value=pad_value,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        layer.weight = conv.weight
        layer.bias = conv.bias
        if input_quantizer is not None:
            input_quantizer.to(conv.weight.device)
        layer.train(conv.training)
        return layer

    def set_quantized(self, *, input: bool | None = None, weight: bool | None = None) -> None:
        """Switch the input and/or weight quantizer on or off."""
        if input is not None:
            if input and self.input_quantizer is None:
                raise ValueError("QuantConv2d: cannot quantize the input, no input_quantizer was given")
            self.quantize_input = input
        if weight is not None:
            if weight and self.weight_quantizer is None:
                raise ValueError("QuantConv2d: cannot quantize the weight, no weight_quantizer was given")
            self.quantize_weight = weight

    @property
    def precision(self) -> Precision:
        """Weight and input bits as the layer runs now: the active quantizers' bits, else 32 (float)."""
        return Precision(
            self.weight_quantizer.precision if self.quantize_weight else FLOAT_BITS,
            self.input_quantizer.precision if self.quantize_input else FLOAT_BITS,
        )

    @property
    def is_binary(self) -> bool:
        """Both input and weight binarized (what LCE runs as a binary conv)."""
        return self.precision.is_binary

    def quantized_weight(self) -> torch.Tensor:
        """The weight the forward uses (``+/-alpha`` when the weight quantizer is on)."""
        if not self.quantize_weight:
            return self.weight
        if self.training:
            return self.weight_quantizer(self.weight)
        if not torch.jit.is_tracing():
            self._refresh_eval_weight()
        return self.eval_weight

    @torch.no_grad()
    def _refresh_eval_weight(self) -> None:
        was_training = self.weight_quantizer.training
        self.weight_quantizer.eval()
        self.eval_weight = self.weight_quantizer(self.weight).detach()
        self.weight_quantizer.train(was_training)

    def train(self, mode: bool = True) -> QuantConv2d:
        super().train(mode)
        if not mode and self.quantize_weight:
            self._refresh_eval_weight()  # fresh before an export traces the eval forward
        return self

    def binarized_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as the binary conv sees it: the input quantizer's output (``sign(x - tau)``), padded with
        ``pad_value`` to the conv's padding. Applies the quantizer whether or not it is switched on."""
        if self.input_quantizer is None:
            raise ValueError("QuantConv2d: no input_quantizer was given, the input cannot be binarized")
        xb = self.input_quantizer(x)
        pads = explicit_pads(self)
        return F.pad(xb, pads, value=self.pad_value) if any(pads) else xb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.quantize_input or self.quantize_weight):
            return super().forward(x)
        weight = self.quantized_weight()
        soft = self.training and self.blend < 1.0
        if soft and self.quantize_weight:
            weight = self.blend * weight + (1.0 - self.blend) * self.weight
        if not self.quantize_input:
            return self._conv_forward(x, weight, self.bias)
        x_in = self.binarized_input(x)
        if soft:  # the float input with the float conv's zero padding
            x_in = self.blend * x_in + (1.0 - self.blend) * F.pad(x, explicit_pads(self))
        return F.conv2d(x_in, weight, self.bias, self.stride, 0, self.dilation, self.groups)

    # The on/off switches travel in the state_dict as a tensor [input, weight] (a tensor, not a
    # dict, because the TorchScript ONNX exporter detaches every state_dict entry).
    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor([self.quantize_input, self.quantize_weight], dtype=torch.bool)

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.set_quantized(input=bool(state[0]), weight=bool(state[1]))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, quantize_input={self.quantize_input}, "
            f"quantize_weight={self.quantize_weight}, pad_value={self.pad_value}"
        )
