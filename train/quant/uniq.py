"""UniQ's learnable symmetric uniform quantizer (Pham et al. 2021, METHODS.md §2) and its conv layer.

``n = 2^b - 1`` levels above the lowest; learnable steps ``Delta_w`` (weights, per layer) and
``Delta_a`` (activations, per layer):

    w_hat = Delta_w * (round(clip(w / Delta_w + n/2, 0, n)) - n/2)     (odd multiples of Delta_w / 2)
    x_hat = Delta_a * round(clip(x / Delta_a, 0, n))                   ({0, 1, ..., n} * Delta_a)

Training: round with the identity gradient, clip's gradient mask, and LSQ-style step gradients
scaled by ``1 / sqrt(N * Q_P)`` (``N``: weights of the layer, or elements of the whole activation
batch; ``Q_P = max(2^(b-1) - 1, 1)`` for weights, ``2^b - 1`` for activations), as the official
code (phuocphn/uniq ``quantizer/uniq.py``) does. Steps are 0-d parameters, so the engine gives them
no weight decay.

Deploy (eval) forms of ``UniqConv2d``:
- multi-bit: ``x -> clip(x, 0, n Delta_a) -> QDQ(scale Delta_a, zero point -128)`` and the weight as
  ``QDQ(scale Delta_w / 2, zero point 0)`` (``train.quant.grid``): an int8 TFLite model with exactly
  these grids.
- 1-bit: UniQ's activations are {0, Delta_a}, LCE's are +/-1. With ``a = (1 - b') / 2``,
  ``b' = sgn(Delta_a / 2 - x)`` and ``w_hat = (Delta_w / 2) w~`` (``w~ = +/-1``),

      conv(Delta_a a, w_hat) = (Delta_a Delta_w / 4) sum_k w~ - (Delta_a Delta_w / 4) conv_pad=+1(b', w~)

  exact at the borders too (zero-padded ``a`` is one-padded ``b'``) and at ties (``x = Delta_a / 2``
  rounds half to even to ``a = 0``, and ``sgn(0) = +1`` is ``b' = +1``, i.e. ``a = 0``). So the eval
  forward is the canonical binary form the converter lowers to ``LceBconv2d``: ``where(Delta_a/2 - x
  >= 0, 1, -1)``, +1 padding, a conv with the constant weight ``-(Delta_a Delta_w / 4) w~`` and the
  bias ``(Delta_a Delta_w / 4) sum_k w~``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from train.quant import functional as qf
from train.quant.grid import GridConv2d, GridWeightQuantizer, grad_scale, int8_qdq, round_ste
from train.quant.layers import explicit_pads
from train.quant.quantizers import Quantizer, register

# MSE-optimal uniform step for unit-variance inputs (official code's ``delta_normal``: N(0, 1), weights;
# ``delta_positive_normal``: half-normal, activations after ReLU), by bit width.
WEIGHT_STEP_GAIN = {1: 1.595769121605729, 2: 0.9956866859435065, 3: 0.5860194414434872, 4: 0.33520061219993685,
                    5: 0.18813879027991698, 6: 0.10406300944201481, 7: 0.05686767238235839}
ACTIVATION_STEP_GAIN = {1: 1.22399153, 2: 0.65076985, 3: 0.35340955, 4: 0.19324868, 5: 0.10548752,
                        6: 0.0572659, 7: 0.03087133, 8: 0.01652923}
ACTIVATION_ZERO_POINT = -128  # the int8 code of level 0


class _LearnedStep(Quantizer):
    """A UniQ quantizer's shared part: ``bits`` (a key of ``gains``, the step initialisation constants) and
    the learnable step ``delta``, one per layer."""

    gains: ClassVar[dict[int, float]] = {}

    def __init__(self, bits: int = 2) -> None:
        super().__init__(0)
        if bits not in self.gains:
            raise ValueError(f"quantizer {self.name!r}: bits must be {min(self.gains)}..{max(self.gains)}, got {bits}")
        self.bits = int(bits)
        self.delta = torch.nn.Parameter(torch.tensor(1.0))

    @property
    def precision(self) -> int:  # type: ignore[override]
        return self.bits

    @property
    def levels(self) -> int:
        """``n = 2^b - 1``."""
        return 2**self.bits - 1

    def options(self) -> dict[str, Any]:
        return {"bits": self.bits}


@register
class UniqWeight(_LearnedStep, GridWeightQuantizer):
    """UniQ's weight quantizer (``w_hat`` above). Up to 7 bits: the codes ``m = 2 w_hat / Delta_w`` (odd,
    ``|m| <= 2^b - 1``) must fit int8's [-127, 127]."""

    name = "uniq_weight"
    gains = WEIGHT_STEP_GAIN

    def step(self) -> torch.Tensor:
        """The grid step of the output: ``Delta_w / 2``."""
        return self.delta / 2

    @torch.no_grad()
    def init_step(self, w: torch.Tensor) -> None:
        """``Delta_w = c_b * std(w)`` (the official initialisation)."""
        self.delta.copy_(w.detach().float().std() * self.gains[self.bits])

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = self.levels
        step = self.delta
        if self.training:
            step = grad_scale(step, 1.0 / math.sqrt(w.numel() * max(2 ** (self.bits - 1) - 1, 1)))
        return step * (round_ste((w / step + n / 2).clamp(0, n)) - n / 2)

@register
class UniqActivation(_LearnedStep):
    """UniQ's activation quantizer (``x_hat`` above). Eval mode writes ``clip(x, 0, n Delta_a)`` then the
    int8 QDQ pair (scale ``Delta_a``, zero point -128)."""

    name = "uniq_activation"
    role = "activation"
    gains = ACTIVATION_STEP_GAIN

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """One calibration batch: ``Delta_a = max(Delta_a, d_b * sqrt(2 E[x^2]))`` (start from 0 with ``reset``)."""
        candidate = (2 * x.detach().double().pow(2).mean()).sqrt() * self.gains[self.bits]
        self.delta.copy_(torch.maximum(self.delta, candidate.to(self.delta.dtype)))

    @torch.no_grad()
    def reset(self) -> None:
        self.delta.zero_()

    def fake_quant(self, x: torch.Tensor) -> torch.Tensor:
        """The training forward's values: ``Delta_a * round(clip(x / Delta_a, 0, n))``."""
        step = self.delta
        if self.training:
            step = grad_scale(step, 1.0 / math.sqrt(x.numel() * self.levels))
        return step * round_ste((x / step).clamp(0, self.levels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.fake_quant(x)
        delta = self.delta.detach()
        return int8_qdq(torch.clamp(x, min=torch.zeros_like(delta), max=self.levels * delta), delta,
                        ACTIVATION_ZERO_POINT)

class UniqConv2d(GridConv2d):
    """A conv with UniQ input and weight quantizers (zero padding of the quantized input, as in the
    official code); its eval forward is the deploy form of the module docstring."""

    input_quantizer: UniqActivation
    weight_quantizer: UniqWeight

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("pad_value", 0.0)
        super().__init__(*args, **kwargs)
        self.register_buffer("eval_bias", None, persistent=False)
        self.register_buffer("eval_half_step", None, persistent=False)

    @property
    def binary_form(self) -> bool:
        """Both quantizers on at 1 bit: the eval forward is LCE's +/-1 form."""
        return self.is_binary

    @property
    def exports_weight_grid(self) -> bool:
        return super().exports_weight_grid and not self.binary_form

    @torch.no_grad()
    def _refresh_eval_weight(self) -> None:
        super()._refresh_eval_weight()
        if not self.binary_form:
            return
        delta_a, delta_w = self.input_quantizer.delta.detach(), self.weight_quantizer.delta.detach()
        signs = 2 * self.eval_weight / delta_w  # exactly +/-1
        scale = delta_a * delta_w / 4
        bias = scale * signs.sum(dim=(1, 2, 3))
        self.eval_weight = -scale * signs
        self.eval_bias = bias if self.bias is None else bias + self.bias.detach()
        self.eval_half_step = delta_a / 2

    def binary_input(self, x: torch.Tensor) -> torch.Tensor:
        """``b' = sgn(Delta_a / 2 - x)`` (+1 where UniQ's ``a = 0``), padded with +1."""
        xb = qf.sign(self.eval_half_step - x)
        pads = explicit_pads(self)
        return F.pad(xb, pads, value=1.0) if any(pads) else xb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.binary_form:
            return super().forward(x)
        weight = self.quantized_weight()  # refreshes the cached binary form outside tracing
        return F.conv2d(self.binary_input(x), weight, self.eval_bias, self.stride, 0, self.dilation, self.groups)
