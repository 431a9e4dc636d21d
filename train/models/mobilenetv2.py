"""MobileNetV2 (Sandler et al. 2018) with a width multiplier; small inputs keep more resolution."""

from __future__ import annotations

import torch
from torch import nn

from train.models.layers import conv_bn, init_weights, is_small_input, make_divisible

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """Expansion 1x1 -> BN -> ReLU6, depthwise 3x3 -> BN -> ReLU6, projection 1x1 -> BN (+ input)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*conv_bn(in_ch, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*conv_bn(hidden, hidden, 3, stride=stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += conv_bn(hidden, out_ch, 1)
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + x if self.use_residual else out


class MobileNetV2(nn.Module):
    """Stem 3x3 conv, inverted residual blocks, 1x1 conv to ``last_channels``, pool, dropout, linear."""

    def __init__(
        self, *, num_classes: int, in_channels: int, image_size: int, width: float, dropout: float
    ) -> None:
        super().__init__()
        small = is_small_input(image_size)
        stem = make_divisible(STEM_CHANNELS * width)
        last = make_divisible(LAST_CHANNELS * max(1.0, width))
        features: list[nn.Module] = [
            nn.Sequential(*conv_bn(in_channels, stem, 3, stride=1 if small else 2), nn.ReLU6(inplace=True))
        ]
        channels = stem
        for index, (expand, base_out, repeats, first_stride) in enumerate(SETTINGS):
            out_ch = make_divisible(base_out * width)
            # Small inputs: the stem and the first downsampling stage keep stride 1 (28/32 px -> 4 px at the end).
            stride = 1 if small and index == 1 else first_stride
            for repeat in range(repeats):
                features.append(InvertedResidual(channels, out_ch, stride if repeat == 0 else 1, expand))
                channels = out_ch
        features.append(nn.Sequential(*conv_bn(channels, last, 1), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        self.keep_float: set[str] = {"features.0.0", "classifier"}
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


def build_mobilenetv2(
    *, num_classes: int, in_channels: int, image_size: int, width: float, dropout: float = 0.2
) -> MobileNetV2:
    """MobileNetV2; channels are ``width`` times the paper's, rounded to multiples of 8 (the last 1x1 conv
    keeps 1280 for ``width <= 1``). Inputs <= 32 px use a stride-1 stem and skip the 24-channel downsampling."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"mobilenetv2: dropout must be in [0, 1), got {dropout}")
    return MobileNetV2(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width, dropout=dropout
    )
