"""The interface every training method implements; the engine calls only these hooks.

A method is a policy that (1) swaps layers of a float model for quantized ones, (2) may add
loss terms, (3) may run a schedule over training steps (BiTAT's bottom-to-top progression),
and (4) leaves every quantized layer in the one eval form the exporter traces (see
``train.quant``). Its options are a ``MethodConfig``, validated when the config is parsed (before
any data is read). Adding a method touches neither the engine nor the exporter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, ClassVar

import torch
from pydantic import AfterValidator
from torch import nn

from train.quant.quantizers import check_role
from train.sections import Section


@dataclass
class MethodContext:
    """What the engine lends a method.

    ``calibration_batches(n)`` yields up to ``n`` (inputs, labels) batches from the training set
    without augmentation, already on ``device``; a method uses it to measure statistics (BiTAT's
    input correlations). ``steps_per_epoch`` and ``total_steps`` let a method place its schedule.
    ``structure_only``: the model is assembled for its structure (the summary), not trained; a method
    may skip expensive numerics whose values do not matter then (QAF's factorisation).
    """

    device: torch.device
    steps_per_epoch: int
    total_steps: int
    calibration_batches: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    log: Callable[[str], None] = print
    structure_only: bool = False


class MethodConfig(Section):
    """Base of a method's typed options (the ``method`` section's keys beside ``name``)."""

    config_key: ClassVar[str] = "method"


def _quantizer_for(name: str, role: str) -> str:
    try:
        return check_role(name, role)
    except ValueError as exc:
        raise ValueError(f"must name a quantizer for {role}s ({exc})") from None


ActivationQuantizer = Annotated[str, AfterValidator(partial(_quantizer_for, role="activation"))]
"""A method option naming a registered quantizer that may binarize activations."""
WeightQuantizer = Annotated[str, AfterValidator(partial(_quantizer_for, role="weight"))]
"""A method option naming a registered quantizer that may binarize weights."""


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

    def in_final_form(self) -> bool:
        """True once every layer the method quantizes is quantized (the form that is exported); a partly
        binarized model of an earlier phase must not become the run's best checkpoint however well it scores."""
        return True

    def step_metrics(self) -> dict[str, float]:
        """Scalars to log with the step (e.g. the current stage, the regularizer value)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the method exactly (tensors, numbers, strings, lists, dicts only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned; called after ``prepare`` when resuming."""
