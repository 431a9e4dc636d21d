"""Which layers can be binary, and swapping them for ``QuantConv2d``.

Eligible (what LCE runs as a binary conv): every ``nn.Conv2d`` with ``groups == 1`` whose
qualified name is not in the model's ``keep_float`` set (stem, shortcuts a model keeps float).
Depthwise/grouped convs and linear layers stay float. Order = module registration order, which
the models keep equal to forward order (bottom to top).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from train.quant.layers import QuantConv2d
from train.quant.quantizers import Quantizer, check_role, from_config


def keep_float(model: nn.Module) -> set[str]:
    """The model's declared float layers (empty if it declares none)."""
    return set(getattr(model, "keep_float", set()))


def eligible_layers(model: nn.Module) -> list[str]:
    """Qualified names of the binarization-eligible convs, bottom to top."""
    kept = keep_float(model)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.groups == 1 and name not in kept
    ]


def quantize_layers(
    model: nn.Module,
    names: list[str],
    input_quantizer: Callable[[nn.Conv2d], Quantizer],
    weight_quantizer: Callable[[nn.Conv2d], Quantizer],
    *,
    pad_value: float = 1.0,
    active: bool = False,
    layer_cls: type[QuantConv2d] = QuantConv2d,
) -> dict[str, QuantConv2d]:
    """Replace each named conv by a ``layer_cls`` (a ``QuantConv2d``) sharing its parameters; return them
    by name.

    The factories build each layer's quantizers from the float conv (e.g. a threshold with one
    entry per input channel). ``active`` says whether the quantizers start switched on.
    """
    eligible = set(eligible_layers(model))
    swapped: dict[str, QuantConv2d] = {}
    for name in names:
        if name not in eligible:
            raise ValueError(
                f"layer {name!r} is not a binarization-eligible conv of {type(model).__name__} "
                f"(eligible: {', '.join(sorted(eligible)) or 'none'})"
            )
        conv = model.get_submodule(name)
        layer = layer_cls.from_conv(
            conv, input_quantizer=input_quantizer(conv), weight_quantizer=weight_quantizer(conv), pad_value=pad_value
        )
        layer.set_quantized(input=active, weight=active)
        model.set_submodule(name, layer)
        swapped[name] = layer
    return swapped


def quantize_eligible(
    model: nn.Module,
    *,
    activation: str,
    weight: str,
    threshold: bool,
    pad_value: float = 1.0,
    names: list[str] | None = None,
) -> dict[str, QuantConv2d]:
    """Swap the eligible convs (or ``names``) for ``QuantConv2d`` with the named quantizers, switched off.

    ``activation``/``weight`` are quantizer registry names; ``threshold`` gives each input
    quantizer a learnable per-input-channel threshold.
    """
    check_role(activation, "activation")
    check_role(weight, "weight")

    def make_input(conv: nn.Conv2d) -> Quantizer:
        return from_config({"name": activation, "channels": conv.in_channels if threshold else 0})

    def make_weight(_conv: nn.Conv2d) -> Quantizer:
        return from_config({"name": weight})

    layers = eligible_layers(model) if names is None else names
    if not layers:
        raise ValueError(f"{type(model).__name__} has no binarization-eligible conv (groups == 1, not in keep_float)")
    return quantize_layers(model, layers, make_input, make_weight, pad_value=pad_value)
