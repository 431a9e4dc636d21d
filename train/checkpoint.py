"""Checkpoints: atomic save, ``weights_only`` load, RNG capture, and rebuilding a trained model.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (so
``torch.load(weights_only=True)`` reads it): ``model``, ``optimizer``, ``scaler``, ``method``,
``rng``, ``global_step``, ``epoch``, ``position`` (batches done in ``epoch``), ``best_val_top1``,
``config`` (the resolved config dict), ``data_info`` (classes, input size, normalization) and
the bookkeeping the engine needs to resume exactly.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bitat_edge.atomic import atomic_open
from train import methods
from train.config import ConfigError, TrainConfig, config_from_dict
from train.methods import Method, MethodContext
from train.models import build_model


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically (a kill mid-write leaves the old file intact)."""
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` on the CPU."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} not found; train a model first or check the path")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {source} is corrupt or not a bitat-edge checkpoint ({first_line}); retrain or pick another file"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"checkpoint {source} lacks the 'model' or 'config' entry; it was not written by bitat-edge")
    return state


def capture_rng() -> dict[str, Any]:
    """Every RNG the training loop may touch, as tensors and plain lists."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what ``capture_rng`` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        ("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
         np_state["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))


def input_shape(data_info: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) of one model input."""
    size = data_info["image_size"]
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return int(data_info["in_channels"]), height, width


def build_network(cfg: TrainConfig, data_info: dict[str, Any]) -> nn.Module:
    """The float backbone named by ``cfg.model`` for a dataset described by ``data_info``."""
    try:
        return build_model(
            cfg.model.arch,
            num_classes=int(data_info["num_classes"]),
            in_channels=int(data_info["in_channels"]),
            image_size=data_info["image_size"],
            width=cfg.model.width,
            **cfg.model.options,
        )
    except ValueError as exc:
        message = exc.args[0] if exc.args else exc
        raise ConfigError(f"cannot build model {cfg.model.arch!r} (config section 'model'): {message}") from None


def prepare_model(cfg: TrainConfig, model: nn.Module, ctx: MethodContext) -> tuple[Method, nn.Module]:
    """Build the configured method and let it prepare ``model`` (a method's ValueError is a config error)."""
    method = methods.get(cfg.method.name)(cfg.method.options)
    try:
        prepared = method.prepare(model, ctx)
    except ValueError as exc:
        raise ConfigError(f"method {cfg.method.name!r} cannot prepare the model: {exc}") from None
    return method, prepared.to(ctx.device)


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


def noise_batches(data_info: dict[str, Any], device: torch.device, batch: int = 8) -> Callable[
        [int], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """Calibration batches of seeded noise, for rebuilding a model whose statistics the checkpoint restores."""
    shape = input_shape(data_info)
    classes = int(data_info["num_classes"])

    def batches(n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(0)
        for _ in range(n):
            x = torch.randn((batch, *shape), generator=generator)
            y = torch.randint(0, classes, (batch,), generator=generator)
            yield x.to(device), y.to(device)

    return batches


def build_from_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the trained model stored in ``path`` (architecture, method layers, weights), in eval mode."""
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], f"{path} (stored config)")
    info = state["data_info"]
    target = torch.device(device)
    model = build_network(cfg, info).to(target)
    ctx = MethodContext(
        device=target,
        steps_per_epoch=int(state["steps_per_epoch"]),
        total_steps=int(state["total_steps"]),
        calibration_batches=noise_batches(info, target),
        log=lambda _msg: None,
    )
    method, model = prepare_model(cfg, model, ctx)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model its config describes: "
                              f"{str(exc).splitlines()[0]}") from None
    method.load_state_dict(state["method"])
    return model.eval(), cfg
