"""Damaged train inputs: checkpoints, config files and IDX dataset files truncated and bit-flipped. Each is
read or refused with one line (a ``TrainError`` / ``SchemaError``), never anything else, and nothing is
written (counts in the test log's fuzz section)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from fuzzing import Outcomes, flips, stray_files, truncations

from bitat_edge.schema import SchemaError
from train.assembly import build_from_checkpoint
from train.config import load_config
from train.data import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_idx_pair
from train.errors import TrainError

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke_synthetic.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    """A real last.pt of a binary (ste) run of the smoke config, two steps long."""
    from train.engine import train

    cfg = load_config(SMOKE, ["method.name=ste", "optim.epochs=1", "run.max_steps=2", "data.synthetic_train=64",
                              "data.synthetic_test=32"])
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(cfg, run, resume=False)
    return (run / "checkpoints" / "last.pt").read_bytes()


def test_damaged_checkpoints_are_refused_in_one_line(workdir, checkpoint):
    path = workdir / "last.pt"
    outcomes = Outcomes("train: checkpoint truncated (300 offsets), bytes flipped", (TrainError, SchemaError))
    for data in [*truncations(checkpoint, limit=300), *flips(checkpoint, 200)]:
        path.write_bytes(data)
        outcomes.run(lambda: build_from_checkpoint(path), str(path))
    assert not outcomes.record(stray_files(workdir, {path}))["stray files"]
    assert outcomes.counts["refused"] >= 300


def test_damaged_config_files_are_refused_in_one_line(workdir):
    good = SMOKE.read_bytes()
    path = workdir / "config.yaml"
    outcomes = Outcomes("train: config truncated at every offset, bytes flipped", (TrainError, SchemaError))
    for data in [*truncations(good), *flips(good, 200)]:
        path.write_bytes(data)
        outcomes.run(lambda: load_config(path), str(path))
    assert not outcomes.record(stray_files(workdir, {path}))["stray files"]
    assert outcomes.counts["refused"] >= 200 and outcomes.counts["read"] > 0


def _idx(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("which", ["images", "labels", "images.gz"])
def test_damaged_idx_files_are_refused_in_one_line(workdir, which):
    rng = np.random.default_rng(0)
    images = workdir / "images-idx3-ubyte"
    labels = workdir / "labels-idx1-ubyte"
    images.write_bytes(_idx(IDX_IMAGES_MAGIC, rng.integers(0, 256, (2, 28, 28))))
    labels.write_bytes(_idx(IDX_LABELS_MAGIC, np.array([3, 7])))
    if which == "images.gz":
        gz = workdir / "images-idx3-ubyte.gz"
        gz.write_bytes(gzip.compress(images.read_bytes()))
        images.unlink()
        images = gz
    target = labels if which == "labels" else images
    good = target.read_bytes()
    outcomes = Outcomes(f"train: IDX {which} truncated at every offset, bytes flipped", TrainError)
    for data in [*truncations(good), *flips(good, 200)]:
        target.write_bytes(data)
        outcomes.run(lambda: load_idx_pair(images, labels, num_classes=10), str(target))
    assert not outcomes.record(stray_files(workdir, {images, labels}))["stray files"]
    assert outcomes.counts["refused"] >= min(len(good), 200)
