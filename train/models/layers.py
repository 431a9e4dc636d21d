"""Building blocks shared by the backbones: conv+BN, RPReLU, channel rounding, weight init."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMALL_INPUT_MAX = 32
"""Inputs up to this side (pixels) get the small-image stems (stride 1, no max-pool)."""


def is_small_input(image_size: int) -> bool:
    """True for CIFAR/Fashion-MNIST-sized inputs, which keep full resolution in the stem."""
    return image_size <= SMALL_INPUT_MAX


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90 % of it (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """A bias-free ``kernel``x``kernel`` conv with 'same'-style padding followed by BatchNorm."""
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


class RPReLU(nn.Module):
    """ReActNet's RPReLU: ``PReLU(x - gamma) + zeta`` with per-channel learnable gamma, slope and zeta."""

    def __init__(self, channels: int, init_slope: float = 0.25) -> None:
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(channels))
        self.slope = nn.Parameter(torch.full((channels,), init_slope))
        self.shift_out = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x - self.shift_in.view(1, -1, 1, 1), self.slope) + self.shift_out.view(1, -1, 1, 1)


def init_weights(model: nn.Module) -> None:
    """He-normal convs (fan-out), unit BN, small-normal linear layers; biases zero."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
