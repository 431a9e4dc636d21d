"""Per-layer multiply-accumulate counts, measured with forward hooks on one input."""

from __future__ import annotations

import math

import torch
from torch import nn


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """MACs per image of every ``nn.Conv2d`` and ``nn.Linear`` (subclasses included), keyed by qualified
    name in forward order. ``input_shape`` is ``(C, H, W)`` or ``(N, C, H, W)``; counts are per image.
    A layer called several times counts every call. The model's train/eval mode is restored afterwards."""
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {tuple(input_shape)}")
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    macs: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            per_image_outputs = output.numel() // output.shape[0]
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            else:
                fan_in = module.in_features
            macs[name] = macs.get(name, 0) + per_image_outputs * fan_in

        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return macs
