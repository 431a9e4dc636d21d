"""Compact backbones by name: ``build_model("reactnet", num_classes=10, in_channels=1, image_size=28)``.

Every model registers its submodules in forward order, uses plain ``nn.Conv2d``/``nn.Linear``/
``nn.BatchNorm2d`` in the order Conv -> BN -> (residual add) -> activation, and names in ``keep_float``
the conv/linear layers that stay float whatever the quantization method.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from train.models.mobilenetv2 import build_mobilenetv2
from train.models.reactnet import build_reactnet
from train.models.resnet import build_resnet18
from train.models.tiny import build_tiny

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "reactnet": build_reactnet,
    "mobilenetv2": build_mobilenetv2,
    "resnet18": build_resnet18,
    "tiny": build_tiny,
}
_COMMON = ("num_classes", "in_channels", "image_size", "width")


def available_models() -> list[str]:
    """The architecture names ``build_model`` accepts."""
    return sorted(_BUILDERS)


def model_options(arch: str) -> list[str]:
    """The extra keyword options ``arch`` accepts beyond the common ones."""
    builder = _builder(arch)
    return [name for name in inspect.signature(builder).parameters if name not in _COMMON]


def build_model(
    arch: str, *, num_classes: int, in_channels: int, image_size: int, width: float = 1.0, **options: Any
) -> nn.Module:
    """Build backbone ``arch`` for ``in_channels`` x ``image_size`` x ``image_size`` inputs and
    ``num_classes`` outputs; ``width`` scales the channels; ``options`` are the arch's own (see
    ``model_options``)."""
    valid = model_options(arch)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {arch!r}; valid options: {', '.join(valid) or 'none'}"
        )
    for name, value, low in (
        ("num_classes", num_classes, 1),
        ("in_channels", in_channels, 1),
        ("image_size", image_size, 8),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"model {name} must be an integer >= {low}, got {value!r}")
    if not width > 0:
        raise ValueError(f"model width must be > 0, got {width!r}")
    return _BUILDERS[arch](
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=float(width), **options
    )


def _builder(arch: str) -> Callable[..., nn.Module]:
    try:
        return _BUILDERS[arch]
    except KeyError:
        raise ValueError(f"unknown model {arch!r}; available: {', '.join(available_models())}") from None
