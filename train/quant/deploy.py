"""Per-layer precision records for the manifest: which weight layers are binary and why not."""

from __future__ import annotations

from torch import nn

from bitat_edge.manifest import LayerSpec
from train.quant.layers import QuantConv2d
from train.quant.surgery import keep_float


def _precision_and_reason(name: str, module: nn.Module, stem: str | None, kept: set[str]) -> tuple[str, str]:
    if isinstance(module, nn.Linear):
        return "float", "classifier"
    if module.groups > 1:
        return "float", "depthwise" if module.groups == module.in_channels else "grouped"
    if name == stem and name in kept:
        return "float", "stem"
    if name in kept:
        return "float", "keep_float"
    if isinstance(module, QuantConv2d):
        if module.is_binary:
            return "w1a1", ""
        if module.quantize_weight:
            return "w1a32", "input not binarized"
    return "float", "not selected"


def layer_specs(model: nn.Module) -> list[LayerSpec]:
    """One ``LayerSpec`` per conv/linear layer of ``model``, bottom to top."""
    kept = keep_float(model)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    stem = next((n for n, m in layers if isinstance(m, nn.Conv2d)), None)
    specs = []
    for name, module in layers:
        precision, reason = _precision_and_reason(name, module, stem, kept)
        if isinstance(module, nn.Linear):
            spec = LayerSpec(name=name, op="linear", precision=precision, in_channels=module.in_features,
                             out_channels=module.out_features, reason=reason)
        else:
            op = "depthwise_conv" if module.groups > 1 and module.groups == module.in_channels else "conv"
            spec = LayerSpec(
                name=name,
                op=op,
                precision=precision,
                in_channels=module.in_channels,
                out_channels=module.out_channels,
                kernel=list(module.kernel_size),
                stride=list(module.stride),
                groups=module.groups,
                reason=reason,
            )
        specs.append(spec)
    return specs
