"""Checkpoint I/O: atomic save, ``weights_only`` load, the typed records stored inside, RNG capture.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (so
``torch.load(weights_only=True)`` reads it): ``model``, ``optimizer``, ``scaler``, ``method``,
``rng``, ``global_step``, ``epoch``, ``position`` (batches done in ``epoch``), ``best_val_top1``,
``config`` (the resolved config dict), ``data_info`` (``DatasetInfo.to_dict()``: classes, input
size, normalization) and the bookkeeping the engine needs to resume exactly. Rebuilding the model
a checkpoint holds is ``train.assembly.build_from_checkpoint``.
"""

from __future__ import annotations

import os
import pickle
import random
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitat_edge import schema
from bitat_edge.atomic import atomic_open
from train.config import TrainConfig, config_from_dict
from train.data import DatasetInfo
from train.errors import CheckpointError


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
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError, KeyError,
            IndexError, struct.error, OverflowError, NotImplementedError) as exc:  # what damaged zips and pickles raise
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


def stored_config(state: dict[str, Any], path: str | os.PathLike[str]) -> TrainConfig:
    """The resolved config a checkpoint was trained with (validated like a config file)."""
    return config_from_dict(state["config"], f"{path} (stored config)")


def stored_data_info(state: dict[str, Any], path: str | os.PathLike[str]) -> DatasetInfo:
    """The description of the dataset a checkpoint was trained on."""
    if "data_info" not in state:
        raise CheckpointError(f"checkpoint {path} lacks the 'data_info' entry; it was not written by bitat-edge")
    try:
        return schema.parse(DatasetInfo, state["data_info"], f"checkpoint {path} (data_info)")
    except schema.SchemaError as exc:
        raise CheckpointError(str(exc)) from None
