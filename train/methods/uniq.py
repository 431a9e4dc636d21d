"""``uniq``: UniQ (Pham et al., IEEE Access 2021, arXiv:2104.00210), METHODS.md §2.

Every eligible conv (the model's ``keep_float`` layers, stem and classifier, stay float) gets UniQ's
``bits``-bit weight and input-activation quantizers (``train.quant.uniq``). At step 0 the steps are
initialised from the float model: ``Delta_w = c_b * std(w)`` and ``Delta_a = max over
``calibration_batches`` batches of d_b * sqrt(2 E[x^2])``; then every quantizer is switched on.

From the paper/code: the quantizer, its gradients, the initialisation constants, layer-wise steps,
no weight decay on the steps (0-d parameters get none from the engine). Our reading: the
statistics are measured with BatchNorm in eval mode (the code runs 100 training batches in train
mode); the first/last layers stay float in training (the code quantizes them to 8 bits when
b >= 2; the int8 deployment quantizes them to 8 bits); the optimizer and schedule are the shared
recipe of the comparison (the code: SGD, cosine, 90-120 epochs).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from train.methods.base import Method, MethodConfig, MethodContext
from train.quant.calibrate import observe_inputs
from train.quant.surgery import eligible_layers, quantize_layers
from train.quant.uniq import UniqActivation, UniqConv2d, UniqWeight


class UniqConfig(MethodConfig):
    """Options of ``uniq``: ``bits`` of weights and activations (1 deploys through LCE, 2..7 as int8
    TFLite); ``calibration_batches`` for the activation step initialisation (the code uses 100)."""

    bits: int = Field(2, ge=1, le=7)
    calibration_batches: int = Field(100, ge=1)


class UniqMethod(Method):
    """UniQ at ``bits`` bits on every eligible conv (see ``UniqConfig``)."""

    name = "uniq"
    config_cls = UniqConfig
    config: UniqConfig

    def __init__(self, config: UniqConfig) -> None:
        super().__init__(config)
        self.layers: dict[str, UniqConv2d] = {}
        self.initialized = False

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        bits = self.config.bits
        names = eligible_layers(model)
        if not names:
            raise ValueError(f"{type(model).__name__} has no eligible conv (groups == 1, not in keep_float)")
        self.layers = quantize_layers(model, names, lambda _conv: UniqActivation(bits), lambda _conv: UniqWeight(bits),
                                      pad_value=0.0, layer_cls=UniqConv2d)  # type: ignore[assignment]
        return model

    @torch.no_grad()
    def init_steps(self, model: nn.Module, ctx: MethodContext) -> None:
        """UniQ's initialisation of every step from the float model (module docstring)."""
        for layer in self.layers.values():
            layer.weight_quantizer.init_step(layer.weight)
            layer.input_quantizer.reset()
        seen = observe_inputs(model, self.layers, ctx.calibration_batches(self.config.calibration_batches),
                              lambda name, x: self.layers[name].input_quantizer.observe(x))
        if not seen:
            raise ValueError("calibration got no batches; the training set must yield at least one batch")

    def on_step_start(self, step: int, model: nn.Module, ctx: MethodContext) -> None:
        if self.initialized:
            return
        self.init_steps(model, ctx)
        for layer in self.layers.values():
            layer.set_quantized(input=True, weight=True)
        self.initialized = True
        ctx.log(f"uniq: {len(self.layers)} layers at w{self.config.bits}a{self.config.bits}, steps initialised")

    def in_final_form(self) -> bool:
        return self.initialized

    def step_metrics(self) -> dict[str, float]:
        return {"quantized_layers": float(sum(not layer.precision.is_float for layer in self.layers.values()))}

    def state_dict(self) -> dict[str, Any]:
        return {"initialized": self.initialized}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.initialized = bool(state["initialized"])
