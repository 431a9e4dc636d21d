"""``bitat``: our interpretation of BiTAT (METHODS.md §1.3): three switchable components.

- **Progression** (``progressive``): the eligible layers turn binary stage by stage (a block or a
  layer), bottom to top, with the stage starts spread evenly over the first ``progression``
  fraction of the steps; from the last start on every layer is binary and the whole net trains
  jointly, so the all-binary phase keeps most of the budget. With ``activations_first`` every
  layer's input is binary from step 0 and the stages switch the weights (the two-step recipe,
  progressive in its second step). Without progression: one stage, every layer at step 0. With
  ``soft_stages`` a stage's layers move from float to binary over their stage instead of at its start:
  in training they compute with ``t q + (1 - t) f`` for weights and inputs (``q`` binary, ``f`` float),
  ``t`` rising linearly from 0 at the stage start to 1 at the next stage's start (the overlapping,
  soft stages the issue suggests; our choice, not the paper's).
- **Trained orthonormal transform** (``rotation``): each layer binarizes ``V = W x_C R``, its latent
  weight rotated on the input-channel axis by ``R``, the Cayley map of ``A - A^T`` (orthonormal),
  ``A`` trained with the task from 0 (``train.quant.rotation``); the deployed weight is ``alpha sign(V)``, plain +/-alpha.
- **Importance** (``importance``): at its stage start each layer's input correlation
  ``C = E[x_b x_b^T]`` of its binarized im2col patches is measured on the current, partly binary
  net and split by ``eigh`` into an orthonormal basis ``U`` and importances ``lambda``; the
  quantization error is weighted by that metric, ``R = tr(dV U diag(lambda) U^T dV^T) / (O D)``,
  ``dV = V - alpha sign(V)`` (= ``E||dV x_b||^2`` up to a constant: the output error of the
  binarized layer). ``beta * R`` joins the loss with ``beta * R = beta_ratio * CE`` at the stage
  start, annealed to 0 at the stage end. With the rotation on, ``R`` trains the rotation only
  (the latent weights see the task loss alone, so the term never holds back a sign flip); without
  it, ``R`` acts on the latent weights (the first implementation). Without importance the metric
  is the identity.

The float model is the teacher through the engine's ``distill.teacher``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from train.methods.base import ActivationQuantizer, Method, MethodConfig, MethodContext, WeightQuantizer
from train.quant.calibrate import init_thresholds, observe_inputs
from train.quant.importance import (
    CorrelationMeter,
    binary_patches,
    choose_signs,
    eigen_importance,
    regularizer,
)
from train.quant.layers import QuantConv2d
from train.quant.rotation import RotatedSign
from train.quant.schedule import Granularity, StageSchedule, group_stages
from train.quant.surgery import quantize_eligible


class BitatConfig(MethodConfig):
    """Options of ``bitat`` (see the module docstring for the components).

    Schedule: ``granularity`` (layer | block), ``progressive``, ``progression`` (the fraction of
    the steps over which the stages start), ``activations_first``, ``soft_stages`` (not with
    ``activations_first``). Transform: ``rotation``,
    ``rotation_scale`` (``S = scale (A - A^T)``: the rotation's learning rate relative to the weights').
    Importance: ``importance``, ``beta_ratio`` (0 turns the term off); ``C`` is the mean over
    ``calibration_batches`` batches of at most ``max_patches`` patches per batch and layer (drawn
    with ``seed``), ``eps`` added to its diagonal, measured in eval mode. ``sign_choice`` (R9b):
    signs chosen by importance at the stage start (layers with fan-in above
    ``sign_choice_max_dim`` keep sign(w)); ``gradient_weighting`` (R6): rows weighted by the mean
    squared output gradient. Quantizers: as ``ste`` (``weight`` applies without the rotation).
    """

    granularity: Granularity = "block"
    progressive: bool = True
    progression: float = Field(0.3, gt=0, lt=1)
    activations_first: bool = False
    soft_stages: bool = False
    rotation: bool = True
    rotation_scale: float = Field(1.0, gt=0)
    importance: bool = True
    beta_ratio: float = Field(0.1, ge=0)
    calibration_batches: int = Field(4, ge=1)
    max_patches: int = Field(4096, ge=1)
    eps: float = Field(1e-4, ge=0)
    sign_choice: bool = False
    sign_choice_max_dim: int = 1200
    gradient_weighting: bool = False
    activation: ActivationQuantizer = "approx_sign"
    weight: WeightQuantizer = "magnitude_aware_sign"
    threshold: bool = True
    pad_value: float = 1.0
    seed: int = 0

    @model_validator(mode="after")
    def _soft_stages_switch_both(self) -> BitatConfig:
        if self.soft_stages and self.activations_first:
            raise ValueError("soft_stages blends a stage's weights and inputs together; it cannot be combined "
                             "with activations_first (inputs binary from step 0)")
        return self


@contextlib.contextmanager
def _buffers_kept(model: nn.Module) -> Iterator[None]:
    """Train mode for a measurement, then every buffer (BatchNorm statistics) and the mode restored."""
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved[name])
        model.train(was_training)


class BitatMethod(Method):
    """Progressive, importance-weighted binarization (see the module docstring and ``BitatConfig``)."""

    name = "bitat"
    config_cls = BitatConfig
    config: BitatConfig

    def __init__(self, config: BitatConfig) -> None:
        super().__init__(config)
        self.layers: dict[str, QuantConv2d] = {}
        self.schedule: StageSchedule | None = None
        self.started = 0  # stages started so far
        self.beta0 = 0.0
        self.beta = 0.0
        self.stats: dict[str, dict[str, torch.Tensor]] = {}  # current stage: corr, basis, importance
        self._reg: torch.Tensor | None = None

    # ----- setup -------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        c = self.config
        self.layers = quantize_eligible(
            model, activation=c.activation, weight=c.weight, threshold=c.threshold, pad_value=c.pad_value
        )
        if c.rotation:
            for layer in self.layers.values():
                layer.weight_quantizer = RotatedSign(layer.in_channels, scale=c.rotation_scale).to(layer.weight.device)
        stages = group_stages(list(self.layers), c.granularity) if c.progressive else [list(self.layers)]
        self.schedule = StageSchedule.build(stages, total_steps=ctx.total_steps, progression=c.progression)
        ctx.log(
            f"bitat: {len(self.layers)} eligible layers in {len(stages)} stage(s) of {self.schedule.stage_steps} "
            f"steps, all binary from step {self.schedule.finetune_start - self.schedule.stage_steps} "
            f"to {ctx.total_steps}"
        )
        return model

    # ----- schedule ----------------------------------------------------------------------------
    def on_step_start(self, step: int, model: nn.Module, ctx: MethodContext) -> None:
        assert self.schedule is not None, "prepare() must run before on_step_start()"
        if self.config.activations_first and self.started == 0:
            self._binarize_inputs(self.layers, model, ctx)
        while self.started < self.schedule.stages_started(step):
            self._start_stage(self.started, model, ctx)
            self.started += 1
        stage = self.started - 1
        start, end = self.schedule.start(stage), self.schedule.end(stage)
        if self.config.soft_stages:
            for started in range(self.started):
                blend = min(1.0, (step - self.schedule.start(started)) / self.schedule.stage_steps)
                for name in self.schedule.stages[started]:
                    self.layers[name].blend = blend
        self.beta = self.beta0 * max(0.0, 1.0 - (step - start) / (end - start)) if step < end else 0.0

    def _binarize_inputs(self, layers: dict[str, QuantConv2d], model: nn.Module, ctx: MethodContext) -> None:
        if self.config.threshold:
            init_thresholds(model, layers, ctx.calibration_batches(self.config.calibration_batches))
        for layer in layers.values():
            layer.set_quantized(input=True)

    def _start_stage(self, stage: int, model: nn.Module, ctx: MethodContext) -> None:
        c = self.config
        names = self.schedule.stages[stage]
        layers = {n: self.layers[n] for n in names}
        if not c.activations_first:
            self._binarize_inputs(layers, model, ctx)
        self.stats = {}
        if (c.importance and c.beta_ratio > 0) or c.sign_choice:
            for name, corr in self._correlations(model, layers, ctx, stage).items():
                entry = {"corr": corr.float()}
                if c.importance:
                    entry["basis"], entry["importance"] = eigen_importance(corr, c.eps)
                self.stats[name] = entry
        if c.sign_choice:
            self._choose_signs(layers)
        for layer in layers.values():
            layer.set_quantized(weight=True)
        self.beta0 = 0.0
        if c.beta_ratio > 0:
            ce = self._measure_task_loss(model, layers, ctx)
            reg = float(self._stage_regularizer(layers).detach())
            self.beta0 = c.beta_ratio * ce / reg if reg > 0.0 else 0.0
        ctx.log(
            f"bitat: stage {stage + 1}/{len(self.schedule.stages)} at step {self.schedule.start(stage)}: "
            f"{', '.join(names)} binary; beta0={self.beta0:.4g}"
        )

    def _correlations(
        self, model: nn.Module, layers: dict[str, QuantConv2d], ctx: MethodContext, stage: int
    ) -> dict[str, torch.Tensor]:
        meters = {name: CorrelationMeter() for name in layers}
        generator = torch.Generator().manual_seed(self.config.seed * 100003 + stage)

        def observe(name: str, x: torch.Tensor) -> None:
            meters[name].update(binary_patches(layers[name], x, self.config.max_patches, generator))

        observe_inputs(model, layers, ctx.calibration_batches(self.config.calibration_batches), observe)
        return {name: meter.mean() for name, meter in meters.items()}

    @torch.no_grad()
    def _choose_signs(self, layers: dict[str, QuantConv2d]) -> None:
        for name, layer in layers.items():
            corr = self.stats[name]["corr"]
            if corr.shape[0] > self.config.sign_choice_max_dim:
                continue
            signs = choose_signs(layer.weight, corr)
            layer.weight.copy_(layer.weight.abs() * signs)

    def _stage_regularizer(self, layers: dict[str, QuantConv2d]) -> torch.Tensor:
        """The importance-weighted quantization error of ``layers``: of the rotated weight with the
        latent weight held fixed (it trains the rotation) or, without the rotation, of the latent weight."""
        total = None
        for name, layer in layers.items():
            entry = self.stats.get(name, {})
            q = layer.weight_quantizer
            weight = q.rotate(layer.weight.detach()) if isinstance(q, RotatedSign) else layer.weight
            r = regularizer(weight, entry.get("basis"), entry.get("importance"), entry.get("row_weight"))
            total = r if total is None else total + r
        return total

    def _measure_task_loss(self, model: nn.Module, layers: dict[str, QuantConv2d], ctx: MethodContext) -> float:
        """Mean CE on calibration batches of the just-switched net, in train mode (batch statistics)
        without touching any running statistic; with ``gradient_weighting`` also R6's ``gamma_o``."""
        weighting = self.config.gradient_weighting
        sums: dict[str, torch.Tensor] = {}
        handles = []
        if weighting:

            def capture(name: str):
                def hook(_m: nn.Module, _args: Any, out: torch.Tensor) -> None:
                    def on_grad(g: torch.Tensor) -> None:
                        sums[name] = sums.get(name, 0) + g.detach().double().square().mean(dim=(0, 2, 3))

                    out.register_hook(on_grad)

                return hook

            handles = [layer.register_forward_hook(capture(name)) for name, layer in layers.items()]
        losses = []
        try:
            with _buffers_kept(model), torch.set_grad_enabled(weighting):
                for inputs, labels in ctx.calibration_batches(self.config.calibration_batches):
                    loss = F.cross_entropy(model(inputs), labels)
                    if weighting:
                        loss.backward()
                    losses.append(float(loss.detach()))
        finally:
            for handle in handles:
                handle.remove()
            if weighting:
                model.zero_grad(set_to_none=True)
        for name, total in sums.items():
            self.stats.setdefault(name, {})["row_weight"] = (total / total.mean().clamp_min(1e-30)).float()
        return sum(losses) / len(losses)

    # ----- loss and logs -----------------------------------------------------------------------
    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        if self.beta == 0.0 or self.started == 0:
            self._reg = None
            return None
        names = self.schedule.stages[self.started - 1]
        reg = self._stage_regularizer({n: self.layers[n] for n in names})
        self._reg = reg.detach()
        return self.beta * reg

    def in_final_form(self) -> bool:
        return self.schedule is not None and self.started == len(self.schedule.stages)

    def step_metrics(self) -> dict[str, float]:
        return {
            "stage": float(self.started),
            "binary_layers": float(sum(layer.is_binary for layer in self.layers.values())),
            "beta": self.beta,
            "reg": float(self._reg) if self._reg is not None else 0.0,
        }

    # ----- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "beta0": self.beta0,
            "stage_steps": self.schedule.stage_steps if self.schedule else 0,
            "stats": {n: {k: v.detach().cpu() for k, v in e.items()} for n, e in self.stats.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.schedule is not None and state["stage_steps"] != self.schedule.stage_steps:
            raise ValueError(
                f"the checkpoint's BiTAT stages last {state['stage_steps']} steps but this run's last "
                f"{self.schedule.stage_steps}; resume with the same method options, epochs and batch size"
            )
        self.started = int(state["started"])
        self.beta0 = float(state["beta0"])
        device = next(iter(self.layers.values())).weight.device if self.layers else torch.device("cpu")
        self.stats = {n: {k: v.to(device) for k, v in e.items()} for n, e in state["stats"].items()}
