"""The interface every training method implements; the engine calls only these hooks.

A method is a policy that (1) swaps layers of a float model for quantized ones, (2) may add
loss terms, (3) may run a schedule over training steps (BiTAT's bottom-to-top progression),
and (4) leaves every quantized layer in the one deploy form the exporter understands
(see ``train.quant``). Adding a method touches neither the engine nor the exporter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class MethodContext:
    """What the engine lends a method.

    ``calibration_batches(n)`` yields up to ``n`` (inputs, labels) batches from the training set
    without augmentation, already on ``device``; a method uses it to measure statistics (BiTAT's
    input correlations). ``steps_per_epoch`` and ``total_steps`` let a method place its schedule.
    """

    device: torch.device
    steps_per_epoch: int
    total_steps: int
    calibration_batches: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    log: Callable[[str], None] = print


@dataclass
class MethodConfig:
    """Base for a method's typed options (subclass with a @dataclass per method)."""


class Method:
    """Base class: the float method (no quantization). Subclasses override what they need."""

    name: ClassVar[str] = "float"
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        """Return the model to train (layers swapped for quantized ones). Called once, before the
        optimizer is built, after any float checkpoint was loaded; every parameter the method will
        ever train must exist after this call."""
        return model

    def on_step_start(self, step: int, model: nn.Module, ctx: MethodContext) -> None:
        """Called before every optimizer step with the global step (0-based). Schedules act here."""

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        """A loss term added to the task loss for the current step, or None."""
        return None

    def deploy_ready(self) -> bool:
        """True once the model is in its final (deploy) form; a partly binarized model of an earlier
        phase must not become the run's best checkpoint however well it scores."""
        return True

    def step_metrics(self) -> dict[str, float]:
        """Scalars to log with the step (e.g. the current stage, the regularizer value)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the method exactly (tensors, numbers, strings, lists, dicts only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; called after ``prepare`` when resuming."""
