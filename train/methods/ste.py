"""``ste``: the classic baseline. Every eligible conv becomes binary (weights and input activations)
at once from the float model, trained with straight-through estimators. Optional two-step:
binary activations only for the first ``two_step_fraction`` of the steps, then weights too."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import nn

from train.methods.base import ActivationQuantizer, Method, MethodConfig, MethodContext, WeightQuantizer
from train.quant.calibrate import init_thresholds
from train.quant.layers import QuantConv2d
from train.quant.surgery import quantize_eligible


class SteConfig(MethodConfig):
    """Options of ``ste``.

    ``activation``/``weight``: quantizer registry names. ``threshold``: learnable per-channel
    threshold before the activation sign, initialised to the input's channel mean over
    ``calibration_batches`` batches (0: start at 0). ``pad_value``: padding of binary inputs.
    """

    activation: ActivationQuantizer = "approx_sign"
    weight: WeightQuantizer = "magnitude_aware_sign"
    threshold: bool = True
    calibration_batches: int = Field(8, ge=0)
    pad_value: float = 1.0
    two_step: bool = False
    two_step_fraction: float = Field(0.5, gt=0, lt=1)


class SteMethod(Method):
    """Binarize every eligible layer at step 0 (see ``SteConfig``)."""

    name = "ste"
    config_cls = SteConfig
    config: SteConfig

    def __init__(self, config: SteConfig) -> None:
        super().__init__(config)
        self.layers: dict[str, QuantConv2d] = {}
        self.started = False
        self.weights_on = False

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        c = self.config
        self.layers = quantize_eligible(
            model, activation=c.activation, weight=c.weight, threshold=c.threshold, pad_value=c.pad_value
        )
        return model

    def _weight_step(self, ctx: MethodContext) -> int:
        return round(self.config.two_step_fraction * ctx.total_steps) if self.config.two_step else 0

    def on_step_start(self, step: int, model: nn.Module, ctx: MethodContext) -> None:
        if not self.started:
            if self.config.threshold and self.config.calibration_batches:
                init_thresholds(model, self.layers, ctx.calibration_batches(self.config.calibration_batches))
            for layer in self.layers.values():
                layer.set_quantized(input=True)
            self.started = True
            ctx.log(f"ste: {len(self.layers)} layers binary (activations){'' if self.config.two_step else ' and weights'}")
        if not self.weights_on and step >= self._weight_step(ctx):
            for layer in self.layers.values():
                layer.set_quantized(weight=True)
            self.weights_on = True
            if self.config.two_step:
                ctx.log(f"ste: step {step}, weights binary too")

    def in_final_form(self) -> bool:
        return self.started and self.weights_on

    def step_metrics(self) -> dict[str, float]:
        return {"binary_layers": float(sum(layer.is_binary for layer in self.layers.values()))}

    def state_dict(self) -> dict[str, Any]:
        return {"started": self.started, "weights_on": self.weights_on}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.started = bool(state["started"])
        self.weights_on = bool(state["weights_on"])
