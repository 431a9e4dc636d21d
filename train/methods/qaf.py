"""``qaf``: Quantization Aware Factorization (Cherniuk et al., arXiv:2308.04595), METHODS.md §4.

Every eligible ``k x k`` conv (``k > 1``; 1x1 convs, the stem and the classifier are left as they
are, as the paper leaves ResNet-18's 1x1 and dense layers) becomes ``1x1 -> depthwise k x k ->
1x1`` (``train.quant.cp.CPConv2d``) with rank ``R = floor(C_out C_in K / ((C_out + C_in + K) ratio))``
and its three factors found by ALS with ADMM on a ``bits``-bit grid. At step 0 (from the float
weights loaded by ``model.init_from``): factorise, then re-estimate every BatchNorm's statistics on
``bn_batches`` training batches (the paper: 2048 images). The run's optimizer steps are then the
optional fine-tune: factors stay on their grids (fixed steps, straight-through rounding).

From the paper/code: the decomposition, its ADMM updates and stopping rules, the grid and its MSE
threshold search, the rank formula, the layer replacement, BN re-estimation. Ours: the CP-ALS start
without Error-Preserving Correction; ``inner`` ADMM iterations per mode are capped lower than the
code's 1000 (the error plateaus within a few; see ``train.quant.cp``); the fine-tune; 8-bit factors
are symmetric in [-127, 127]. Activations and the other layers are quantized to 8 bits by the int8
deployment (TFLite), not here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from train.methods.base import Method, MethodConfig, MethodContext
from train.quant.cp import CPConv2d, admm_cp, cp_rank
from train.quant.surgery import eligible_layers


class QafConfig(MethodConfig):
    """Options of ``qaf``: ``bits`` of the factors (2..8); ``ratio`` the compression ratio ``rho`` of the
    rank formula; ADMM's ``outer`` (ALS) and ``inner`` (per mode) iteration caps and
    ``init_iterations`` of the CP-ALS start (seeded with ``seed``); ``bn_batches`` training batches for
    the BatchNorm re-estimation."""

    bits: int = Field(8, ge=2, le=8)
    ratio: float = Field(2.0, gt=0)
    outer: int = Field(30, ge=1)
    inner: int = Field(10, ge=1)
    init_iterations: int = Field(50, ge=1)
    bn_batches: int = Field(16, ge=1)
    seed: int = 0


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Any) -> int:
    """Replace every BatchNorm's running statistics by their plain average over ``batches`` (train-mode
    forwards, no gradients); return the number of batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    seen = 0
    try:
        for x, _ in batches:
            model(x)
            seen += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return seen


class QafMethod(Method):
    """Factorise, re-estimate BatchNorm, fine-tune (see ``QafConfig``)."""

    name = "qaf"
    config_cls = QafConfig
    config: QafConfig

    def __init__(self, config: QafConfig) -> None:
        super().__init__(config)
        self.layers: dict[str, CPConv2d] = {}
        self.float_weights: dict[str, torch.Tensor] = {}
        self.errors: dict[str, list[float]] = {}
        self.factorized = False

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        for name in eligible_layers(model):
            conv = model.get_submodule(name)
            if conv.kernel_size == (1, 1):
                continue
            k = math.prod(conv.kernel_size)
            layer = CPConv2d(conv, cp_rank(conv.out_channels, conv.in_channels, k, self.config.ratio), self.config.bits)
            self.float_weights[name] = conv.weight.detach().clone()
            if conv.bias is not None:
                self.float_weights[f"{name}.bias"] = conv.bias.detach().clone()
            model.set_submodule(name, layer)
            self.layers[name] = layer
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no eligible k x k conv (k > 1) to factorise")
        return model

    def factorize(self, ctx: MethodContext) -> None:
        """ADMM on every replaced conv's float weight (kept since ``prepare``)."""
        c = self.config
        for name, layer in self.layers.items():
            w = self.float_weights[name]
            result = admm_cp(w.reshape(w.shape[0], w.shape[1], -1), layer.rank, c.bits, outer=c.outer, inner=c.inner,
                             init_iterations=c.init_iterations, seed=c.seed)
            layer.set_factors(result.factors, self.float_weights.get(f"{name}.bias"))
            self.errors[name] = result.errors
            ctx.log(f"qaf: {name} rank {layer.rank}, {c.bits}-bit factors, relative error "
                    f"{result.errors[0]:.4f} -> {result.errors[-1]:.4f} in {len(result.errors) - 1} ALS iterations")
        self.float_weights.clear()

    def on_step_start(self, step: int, model: nn.Module, ctx: MethodContext) -> None:
        if self.factorized:
            return
        if ctx.structure_only:  # the summary: the factorised structure, not its values
            self.factorized = True
            return
        self.factorize(ctx)
        if not reestimate_batchnorm(model, ctx.calibration_batches(self.config.bn_batches)):
            raise ValueError("calibration got no batches; the training set must yield at least one batch")
        self.factorized = True
        ctx.log(f"qaf: {len(self.layers)} convs factorised, BatchNorm re-estimated on {self.config.bn_batches} batches")

    def in_final_form(self) -> bool:
        return self.factorized

    def step_metrics(self) -> dict[str, float]:
        if not self.errors:
            return {}
        return {"reconstruction_error": sum(e[-1] for e in self.errors.values()) / len(self.errors)}

    def state_dict(self) -> dict[str, Any]:
        return {"factorized": self.factorized, "errors": {k: list(v) for k, v in self.errors.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.factorized = bool(state["factorized"])
        self.errors = {k: [float(e) for e in v] for k, v in state["errors"].items()}
