"""``quantnet``: QuantNet (Liu et al., ECCV-W 2020, arXiv:2009.04626), our interpretation (METHODS.md §3.2).

From the paper (abstract only): a differentiable meta-quantizer, a sub-network that binarizes the
full-precision weights directly inside a fully differentiable graph, with no straight-through
estimator for the weights. Our reading: one element-wise MLP shared by every eligible conv
(``train.quant.quantnet``), ``beta`` annealed geometrically from ``beta_start`` to ``beta_end`` over
the run, and ``penalty * t / T * sum_l mean(1 - u_l^2)`` added to the loss (its weight ramps
linearly from 0 to ``penalty``). The deploy weight is ``alpha * sgn(z)``. Activations are outside
QuantNet; LCE needs them binary: ``activation`` (default ApproxSign) on ``x - tau`` with a learnable
per-channel threshold initialised to the input's channel mean, as in ``ste``. Weights and
activations are binary from step 0; stem and classifier stay float.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

from train.methods.base import ActivationQuantizer, Method, MethodConfig, MethodContext
from train.quant.calibrate import init_thresholds
from train.quant.layers import QuantConv2d
from train.quant.quantizers import from_config
from train.quant.quantnet import MetaQuantizer, QuantNetWeight
from train.quant.surgery import eligible_layers, quantize_layers


class QuantNetConfig(MethodConfig):
    """Options of ``quantnet``: the meta-network's ``hidden`` width and identity-fit ``fit_span``;
    ``beta_start`` -> ``beta_end`` (geometric over the run); ``penalty`` (final weight of the
    binarization term); activations as in ``ste`` (``activation``, ``threshold``,
    ``calibration_batches``, ``pad_value``)."""

    hidden: int = Field(32, ge=1)
    fit_span: float = Field(3.0, gt=0)
    beta_start: float = Field(1.0, gt=0)
    beta_end: float = Field(100.0, gt=0)
    penalty: float = Field(0.01, ge=0)
    activation: ActivationQuantizer = "approx_sign"
    threshold: bool = True
    calibration_batches: int = Field(8, ge=0)
    pad_value: float = 1.0

    @model_validator(mode="after")
    def _annealed_upwards(self) -> QuantNetConfig:
        if self.beta_end < self.beta_start:
            raise ValueError(f"method.beta_end ({self.beta_end}) must be >= method.beta_start ({self.beta_start})")
        return self


class QuantNetMethod(Method):
    """Binary weights through the shared meta-quantizer, binary activations (see ``QuantNetConfig``)."""

    name = "quantnet"
    config_cls = QuantNetConfig
    config: QuantNetConfig

    def __init__(self, config: QuantNetConfig) -> None:
        super().__init__(config)
        self.layers: dict[str, QuantConv2d] = {}
        self.meta: MetaQuantizer | None = None
        self.started = False
        self.progress = 0.0  # t / T of the current step

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        c = self.config
        names = eligible_layers(model)
        if not names:
            raise ValueError(f"{type(model).__name__} has no eligible conv (groups == 1, not in keep_float)")
        meta = MetaQuantizer(c.hidden).to(ctx.device)
        meta.fit_identity(c.fit_span)
        self.meta = meta

        def make_input(conv: nn.Conv2d):
            return from_config({"name": c.activation, "channels": conv.in_channels if c.threshold else 0})

        self.layers = quantize_layers(model, names, make_input, lambda _conv: QuantNetWeight(meta),
                                      pad_value=c.pad_value)
        return model

    def beta(self, progress: float) -> float:
        """``beta`` at ``progress = t / T`` (geometric from ``beta_start`` to ``beta_end``)."""
        c = self.config
        return c.beta_start * (c.beta_end / c.beta_start) ** progress

    def on_step_start(self, step: int, model: nn.Module, ctx: MethodContext) -> None:
        if not self.started:
            if self.config.threshold and self.config.calibration_batches:
                init_thresholds(model, self.layers, ctx.calibration_batches(self.config.calibration_batches))
            for layer in self.layers.values():
                layer.set_quantized(input=True, weight=True)
            self.started = True
            ctx.log(f"quantnet: {len(self.layers)} layers binary through the shared meta-quantizer")
        self.progress = min(1.0, step / max(1, ctx.total_steps - 1))
        self.meta.beta.fill_(self.beta(self.progress))

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        weight = self.config.penalty * self.progress
        terms = [layer.weight_quantizer.penalty for layer in self.layers.values()
                 if layer.training and layer.weight_quantizer.penalty is not None]
        return weight * torch.stack(terms).sum() if weight and terms else None

    def in_final_form(self) -> bool:
        return self.started

    def step_metrics(self) -> dict[str, float]:
        gaps = [layer.weight_quantizer.gap for layer in self.layers.values() if layer.weight_quantizer.gap is not None]
        metrics = {"beta": float(self.meta.beta), "penalty_weight": self.config.penalty * self.progress}
        if gaps:
            metrics["discretization_error"] = float(torch.stack(gaps).mean())
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"started": self.started, "progress": self.progress}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.started = bool(state["started"])
        self.progress = float(state["progress"])
