"""ReActNet-A (Liu et al. 2020): a MobileNetV1-shaped network of full 3x3 and 1x1 convs with shortcuts.

Each block is ``3x3 conv C->C (stride s) -> BN -> + shortcut -> RPReLU`` followed by
``1x1 conv C->C' -> BN -> + shortcut -> RPReLU``; the shortcut of the 3x3 conv is the identity or a
2x2 average pool when ``s == 2``. When ``C' == 2C`` the 1x1 stage is two parallel 1x1 convs C->C, each
with its BN and the identity shortcut, whose outputs are concatenated (as in ReActNet).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from train.models.layers import RPReLU, init_weights, is_small_input, make_divisible

# (block output channels, block stride) at width 1.0.
SMALL_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (64, 1), (128, 2), (128, 1), (128, 1))
"""Default for inputs <= 32 px (Fashion-MNIST 28x28: 32 ch @28 -> 64 ch @14 -> 128 ch @7)."""
LARGE_STAGES: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
"""ReActNet-A's layout for ImageNet-sized inputs."""
STEM_CHANNELS = 32


class ReActBlock(nn.Module):
    """One ReActNet block: a 3x3 C->C conv stage and a 1x1 C->C or C->2C conv stage."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch not in (in_ch, 2 * in_ch):
            raise ValueError(f"a ReActNet block maps C to C or 2C channels, not {in_ch} to {out_ch}")
        if stride not in (1, 2):
            raise ValueError(f"a ReActNet block stride must be 1 or 2, not {stride}")
        self.conv3x3 = nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.shortcut = (
            nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False) if stride == 2 else nn.Identity()
        )
        self.act1 = RPReLU(in_ch)
        # One (1x1 conv C->C, BN) branch per C output channels, registered conv, BN, conv, BN (forward order).
        self.pointwise = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_ch, in_ch, 1, bias=False), nn.BatchNorm2d(in_ch))
            for _ in range(out_ch // in_ch)
        )
        self.act2 = RPReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv3x3(x)) + self.shortcut(x))
        parts = [branch(out) + out for branch in self.pointwise]
        return self.act2(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))


class ReActNet(nn.Module):
    """Float stem conv -> BN -> RPReLU, ReActNet blocks, global average pool, dropout, linear classifier."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        stem_channels: int,
        stem_stride: int,
        stages: Sequence[tuple[int, int]],
        dropout: float,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            RPReLU(stem_channels),
        )
        blocks = []
        channels = stem_channels
        for out_ch, stride in stages:
            blocks.append(ReActBlock(channels, out_ch, stride))
            channels = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        self.keep_float: set[str] = {"stem.0", "classifier"}
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.blocks(self.stem(x))))))


def build_reactnet(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: float,
    stage_channels: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    stem_channels: int = STEM_CHANNELS,
    dropout: float = 0.0,
) -> ReActNet:
    """ReActNet-A; ``stage_channels``/``strides`` (one entry per block, at width 1.0) default to the
    small-input layout for inputs <= 32 px and to ReActNet-A's for larger ones. ``width`` scales the stem
    (rounded to a multiple of 8); every block keeps its C->C or C->2C ratio."""
    default = SMALL_STAGES if is_small_input(image_size) else LARGE_STAGES
    base_channels = list(stage_channels) if stage_channels is not None else [c for c, _ in default]
    base_strides = list(strides) if strides is not None else [s for _, s in default]
    if len(base_channels) != len(base_strides):
        raise ValueError(
            f"reactnet: stage_channels has {len(base_channels)} entries but strides has {len(base_strides)}; "
            "give one stride per block"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"reactnet: dropout must be in [0, 1), got {dropout}")
    stem = make_divisible(stem_channels * width)
    stages = []
    prev_base, prev = stem_channels, stem
    for base, stride in zip(base_channels, base_strides, strict=True):
        if base not in (prev_base, 2 * prev_base):
            raise ValueError(
                f"reactnet: stage_channels must keep or double the previous channels, got {prev_base} -> {base}"
            )
        prev = prev * (base // prev_base)
        stages.append((prev, int(stride)))
        prev_base = base
    return ReActNet(
        num_classes=num_classes,
        in_channels=in_channels,
        stem_channels=stem,
        stem_stride=1 if is_small_input(image_size) else 2,
        stages=stages,
        dropout=dropout,
    )
