"""ResNet-18 (He et al. 2016): the CIFAR form (3x3 stem, no max-pool) for small inputs, the ImageNet stem otherwise."""

from __future__ import annotations

import torch
from torch import nn

from train.models.layers import init_weights, is_small_input, make_divisible

STAGES: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (256, 2), (512, 2))
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> + shortcut -> ReLU; a 1x1 conv + BN shortcut on shape change."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.downsample(x))


class ResNet18(nn.Module):
    """Stem, four stages of two BasicBlocks, global average pool, linear classifier."""

    def __init__(self, *, num_classes: int, in_channels: int, image_size: int, width: float) -> None:
        super().__init__()
        widths = [make_divisible(c * width) for c, _ in STAGES]
        if is_small_input(image_size):
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        blocks = []
        channels = widths[0]
        for out_ch, (_, stride) in zip(widths, STAGES, strict=True):
            for repeat in range(BLOCKS_PER_STAGE):
                blocks.append(BasicBlock(channels, out_ch, stride if repeat == 0 else 1))
                channels = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)
        self.keep_float: set[str] = {"stem.0", "classifier"} | {
            f"{name}.0"
            for name, module in self.named_modules()
            if name.endswith("downsample") and isinstance(module, nn.Sequential)
        }
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.blocks(self.stem(x)))))


def build_resnet18(*, num_classes: int, in_channels: int, image_size: int, width: float) -> ResNet18:
    """ResNet-18 with stage widths 64-128-256-512 times ``width`` (multiples of 8); the 1x1 downsampling
    shortcuts stay float."""
    return ResNet18(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
