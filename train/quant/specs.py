"""Per-layer records for the manifest: each weight layer's precision (read from its quantizers) and,
when a layer is not quantized in weights and inputs, why."""

from __future__ import annotations

from torch import nn

from bitat_edge.manifest import LayerSpec
from bitat_edge.precision import FLOAT, Precision
from train.quant.layers import QuantConv2d
from train.quant.quantizers import Quantizer
from train.quant.surgery import keep_float


def _precision_and_reason(name: str, module: nn.Module, stem: str | None, kept: set[str]) -> tuple[Precision, str]:
    if isinstance(module, nn.Linear):
        return FLOAT, "classifier"
    precision = module.precision if isinstance(module, QuantConv2d) else FLOAT
    if precision.is_float:
        if module.groups > 1:
            return FLOAT, "depthwise" if module.groups == module.in_channels else "grouped"
        if name in kept:
            return FLOAT, "stem" if name == stem else "keep_float"
        return precision, "not selected"
    if precision.activation_bits == FLOAT.activation_bits:
        return precision, "input not quantized"
    if precision.weight_bits == FLOAT.weight_bits:
        return precision, "weight not quantized"
    return precision, ""


def layer_specs(model: nn.Module) -> list[LayerSpec]:
    """One ``LayerSpec`` per conv/linear layer of ``model``, bottom to top (layers inside a quantizer,
    such as QuantNet's meta-network, are part of the quantizer, not of the deployed model)."""
    kept = keep_float(model)
    inside = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, Quantizer))
    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and not n.startswith(inside)]
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
