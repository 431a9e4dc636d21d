"""Statistics of layer inputs measured on calibration batches (no gradients, no side effects)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from train.quant.layers import QuantConv2d


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm running statistics used, not updated), restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def observe_inputs(
    model: nn.Module,
    layers: dict[str, nn.Module],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    observe: Callable[[str, torch.Tensor], None],
) -> int:
    """Run ``model`` in eval mode over ``batches`` and call ``observe(name, input)`` for each layer.

    Returns the number of batches seen.
    """
    handles = [
        layer.register_forward_pre_hook(lambda _m, args, name=name: observe(name, args[0]))
        for name, layer in layers.items()
    ]
    seen = 0
    try:
        with _eval_mode(model), torch.no_grad():
            for inputs, _labels in batches:
                model(inputs)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
    return seen


def init_thresholds(
    model: nn.Module, layers: dict[str, QuantConv2d], batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Set each layer's input threshold tau to the per-channel mean of its (float) input.

    A non-negative input (after ReLU) binarized at 0 is all +1; centring each channel at its mean
    makes the sign informative from the first step. Layers without a threshold are skipped.
    """
    targets = {n: m for n, m in layers.items() if m.input_quantizer is not None and m.input_quantizer.threshold is not None}
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def observe(name: str, x: torch.Tensor) -> None:
        sums[name] = sums.get(name, 0) + x.double().sum(dim=(0, 2, 3))
        counts[name] = counts.get(name, 0) + x.numel() // x.shape[1]

    if not observe_inputs(model, targets, batches, observe):
        raise ValueError("calibration got no batches; the training set must yield at least one batch")
    with torch.no_grad():
        for name, layer in targets.items():
            mean = (sums[name] / counts[name]).to(layer.input_quantizer.threshold.dtype)
            layer.input_quantizer.threshold.copy_(mean.view(1, -1, 1, 1))
