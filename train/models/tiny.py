"""A tiny net for tests: a float stem and three binarization-eligible convs, milliseconds per batch."""

from __future__ import annotations

import torch
from torch import nn

from train.models.layers import RPReLU, init_weights, make_divisible

CHANNELS = 32


class TinyNet(nn.Module):
    """Stem 3x3 (in->C) -> BN -> RPReLU; 3x3 C->C + residual; 3x3 stride-2 C->C; 1x1 C->C; pool; linear."""

    def __init__(self, *, num_classes: int, in_channels: int, width: float) -> None:
        super().__init__()
        ch = make_divisible(CHANNELS * width)
        self.stem = nn.Conv2d(in_channels, ch, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(ch)
        self.stem_act = RPReLU(ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.act1 = RPReLU(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.act2 = RPReLU(ch)
        self.conv3 = nn.Conv2d(ch, ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch)
        self.act3 = RPReLU(ch)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(ch, num_classes)
        self.keep_float: set[str] = {"stem", "classifier"}
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))
        x = self.act1(self.bn1(self.conv1(x)) + x)
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.act3(self.bn3(self.conv3(x)))
        return self.classifier(self.flatten(self.pool(x)))


def build_tiny(*, num_classes: int, in_channels: int, image_size: int, width: float) -> TinyNet:
    """The test net; ``width`` scales its 32 channels (multiples of 8). Global pooling makes it accept any
    input size >= 2 px, so ``image_size`` does not change it."""
    return TinyNet(num_classes=num_classes, in_channels=in_channels, width=width)
