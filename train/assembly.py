"""Model assembly, written once: the float network for a dataset -> the configured method -> the
prepared (quantized) model. The engine assembles with real calibration data; rebuilding a trained
model from its checkpoint and the CLI's summary assemble with seeded noise (the checkpoint restores
every statistic; the summary shows structure only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import torch
from torch import nn

from train import methods
from train.checkpoint import load_checkpoint, stored_config, stored_data_info
from train.config import TrainConfig
from train.data import DatasetInfo
from train.errors import CheckpointError, ConfigError
from train.methods import Method, MethodContext
from train.models import build_model

Batches = Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def build_network(cfg: TrainConfig, info: DatasetInfo) -> nn.Module:
    """The float backbone named by ``cfg.model`` for the dataset ``info`` describes."""
    try:
        return build_model(cfg.model.arch, num_classes=info.num_classes, in_channels=info.in_channels,
                           image_size=info.image_size, width=cfg.model.width, **cfg.model.options)
    except ValueError as exc:
        message = exc.args[0] if exc.args else exc
        raise ConfigError(f"cannot build model {cfg.model.arch!r} (config section 'model'): {message}") from None


def assemble(cfg: TrainConfig, info: DatasetInfo, ctx: MethodContext, *,
             init_weights: bool = False) -> tuple[Method, nn.Module]:
    """Build the float network (with ``model.init_from``'s weights when ``init_weights``), move it to
    ``ctx.device`` and let the configured method prepare it; a method's ValueError is a config error."""
    model = build_network(cfg, info)
    if init_weights and cfg.model.init_from:
        load_init_weights(model, cfg.model.init_from, ctx.log)
    model.to(ctx.device)
    method = methods.get(cfg.method.name)(cfg.method.options)
    try:
        prepared = method.prepare(model, ctx)
    except ValueError as exc:
        raise ConfigError(f"method {cfg.method.name!r} cannot prepare the model: {exc}") from None
    return method, prepared.to(ctx.device)


def assemble_offline(cfg: TrainConfig, info: DatasetInfo, device: torch.device, *, steps_per_epoch: int,
                     total_steps: int, log: Callable[[str], None] = lambda _msg: None
                     ) -> tuple[Method, nn.Module, MethodContext]:
    """``assemble`` without the dataset: the method calibrates on seeded noise (``noise_batches``)."""
    ctx = MethodContext(device=device, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                        calibration_batches=noise_batches(info, device), log=log, structure_only=True)
    method, model = assemble(cfg, info, ctx)
    return method, model, ctx


def build_from_checkpoint(path: str | os.PathLike[str],
                          device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild the trained model stored in ``path`` (architecture, method layers, weights), in eval mode."""
    state = load_checkpoint(path)
    cfg = stored_config(state, path)
    method, model, _ = assemble_offline(cfg, stored_data_info(state, path), torch.device(device),
                                        steps_per_epoch=int(state["steps_per_epoch"]),
                                        total_steps=int(state["total_steps"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model its config describes: "
                              f"{str(exc).splitlines()[0]}") from None
    method.load_state_dict(state["method"])
    return model.eval(), cfg


def schedule_lengths(cfg: TrainConfig, train_images: int, world_size: int = 1) -> tuple[int, int, int]:
    """(per-process batch, optimizer steps per epoch, total steps) of ``cfg`` on ``train_images`` images."""
    batch = cfg.data.batch_size
    if batch % world_size:
        raise ConfigError(f"data.batch_size {batch} must be divisible by the {world_size} processes "
                          "(it is the global batch)")
    per_rank = batch // world_size
    steps_per_epoch = (train_images // world_size) // per_rank
    if steps_per_epoch < 1:
        raise ConfigError(f"data.batch_size {batch} exceeds the {train_images} training images; lower it")
    full = cfg.optim.epochs * steps_per_epoch
    return per_rank, steps_per_epoch, min(full, cfg.run.max_steps) if cfg.run.max_steps else full


def load_init_weights(model: nn.Module, path: str, log: Callable[[str], None]) -> None:
    """Load ``model.init_from`` into the float model before the method prepares it.

    Every parameter and buffer of the float model must come from the checkpoint; entries the
    checkpoint has beyond those (a method's added parameters) are ignored and listed."""
    try:
        state = load_checkpoint(path)["model"]
    except CheckpointError as exc:
        raise CheckpointError(f"model.init_from: {exc}") from None
    own = model.state_dict()
    shape_errors = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if shape_errors:
        raise CheckpointError(
            f"model.init_from {path}: tensor shapes differ for {', '.join(shape_errors[:5])}; "
            "the checkpoint was trained with another architecture, width or dataset"
        )
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise CheckpointError(
            f"model.init_from {path}: the checkpoint lacks {len(result.missing_keys)} entries of the model "
            f"(first: {', '.join(result.missing_keys[:5])}); it was trained with another architecture"
        )
    if result.unexpected_keys:
        log(f"init_from: ignored {len(result.unexpected_keys)} checkpoint entries the float model lacks "
            f"(method-added): {', '.join(result.unexpected_keys[:5])}")


def noise_batches(info: DatasetInfo, device: torch.device, batch: int = 8) -> Batches:
    """Calibration batches of seeded noise, for assembling a model whose statistics come from elsewhere."""

    def batches(n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(0)
        for _ in range(n):
            x = torch.randn((batch, *info.input_shape), generator=generator)
            y = torch.randint(0, info.num_classes, (batch,), generator=generator)
            yield x.to(device), y.to(device)

    return batches
