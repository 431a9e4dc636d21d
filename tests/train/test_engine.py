"""The training engine on synthetic data with the tiny net: run directory, checkpoints, schedule, KD, init."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from train.assembly import build_from_checkpoint
from train.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from train.config import TrainConfig, load_config
from train.data import build_datasets
from train.distributed import DistEnv, epoch_batches, eval_indices
from train.engine import Trainer, build_optimizer, distillation_loss, evaluate, lr_factor, train
from train.teacher import TeacherTable

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke_synthetic.yaml"


def smoke_config(*overrides: str) -> TrainConfig:
    return load_config(SMOKE, overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run")
    summary = train(smoke_config("optim.epochs=4"), run_dir, resume=False)
    return run_dir, summary


def test_run_directory_is_complete(trained):
    run_dir, summary = trained
    for name in (
        "config.yaml",
        "env.json",
        "metrics.csv",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.tmp"))
    assert load_config(run_dir / "config.yaml") == smoke_config("optim.epochs=4")
    env = json.loads((run_dir / "env.json").read_text())
    for key in (
        "python",
        "torch",
        "numpy",
        "platform",
        "cpu_count",
        "cuda_devices",
        "seed",
        "git",
        "command",
        "start_time",
    ):
        assert key in env, key
    assert set(env["git"]) == {"revision", "dirty"}
    stored = json.loads((run_dir / "summary.json").read_text())
    assert stored == pytest.approx(summary)
    # 10 classes (chance 0.1), 128 test images: learning shows clearly above 0.2.
    assert stored["steps"] == 4 * 7 and stored["epochs"] == 4 and stored["test_images"] == 128
    assert 0.2 < stored["test_top1"] <= 1.0 and stored["peak_rss_mib"] > 0 and stored["images_per_s"] > 0


def test_metrics_rows_and_loss_decreases(trained):
    run_dir, _ = trained
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in rows] == [7, 14, 21, 28]
    for column in ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_s", "epoch_seconds"):
        assert all(math.isfinite(float(r[column])) for r in rows), column
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0] - 0.2


def test_checkpoints_load_weights_only(trained):
    run_dir, _ = trained
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert {
            "model",
            "optimizer",
            "scaler",
            "method",
            "rng",
            "global_step",
            "epoch",
            "position",
            "best_val_top1",
            "config",
            "data_info",
        } <= set(state)
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["global_step"] == 28 and last["epoch"] == 4 and last["position"] == 0


def test_build_from_checkpoint_reproduces_test_accuracy(trained):
    run_dir, summary = trained
    model, cfg = build_from_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert not model.training
    splits = build_datasets(cfg.data, cfg.seed)
    loss, top1, count = evaluate(model, splits.test, 64, torch.device("cpu"), DistEnv())
    assert count == 128
    assert top1 == pytest.approx(summary["test_top1"])
    assert loss == pytest.approx(summary["test_loss"], rel=1e-5)


def test_init_from_starts_where_the_checkpoint_was(trained, tmp_path):
    run_dir, summary = trained
    cfg = smoke_config(
        "optim.epochs=1",
        "run.max_steps=1",
        "optim.lr=1e-6",
        f"model.init_from={run_dir / 'checkpoints' / 'best.pt'}",
    )
    result = train(cfg, tmp_path / "init", resume=False)
    assert result["test_top1"] == pytest.approx(summary["test_top1"], abs=0.05)


def test_init_from_another_architecture_is_a_clear_error(trained, tmp_path):
    run_dir, _ = trained
    cfg = smoke_config("model.width=2.0", f"model.init_from={run_dir / 'checkpoints' / 'best.pt'}")
    with pytest.raises(CheckpointError, match="model.init_from .*shapes differ"):
        train(cfg, tmp_path / "bad", resume=False)


def test_distillation_from_teacher_checkpoint(trained, tmp_path):
    run_dir, _ = trained
    cfg = smoke_config(
        "optim.epochs=1",
        f"distill.teacher={run_dir / 'checkpoints' / 'best.pt'}",
        "distill.alpha=0.5",
        "distill.temperature=2.0",
    )
    result = train(cfg, tmp_path / "kd", resume=False)
    assert result["steps"] == 7


def test_max_steps_stops_mid_epoch(tmp_path):
    result = train(smoke_config("run.max_steps=5"), tmp_path, resume=False)
    assert result["steps"] == 5 and result["epochs"] == 1
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [5]


def test_sgd_linear_schedule_runs(tmp_path):
    result = train(
        smoke_config(
            "optim.name=sgd",
            "optim.schedule=linear",
            "optim.lr=0.05",
            "optim.grad_clip=1.0",
            "optim.epochs=1",
        ),
        tmp_path,
        resume=False,
    )
    assert math.isfinite(result["test_loss"])


# -- pieces --------------------------------------------------------------------------------------
def test_lr_schedule_shapes():
    total, warm = 100, 10
    cosine = [lr_factor(s, total, warm, "cosine", 0.0) for s in range(total)]
    assert cosine[0] == pytest.approx(0.1) and cosine[9] == pytest.approx(1.0)
    assert cosine[10] == pytest.approx(1.0)
    assert cosine[55] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(cosine[10:], cosine[11:], strict=False))
    assert lr_factor(total, total, warm, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, total, warm, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(80, total, warm, "constant", 0.0) == 1.0
    assert lr_factor(0, total, 0, "cosine", 0.0) == 1.0


def test_no_weight_decay_on_one_dimensional_parameters():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    optimizer = build_optimizer(model, smoke_config("optim.weight_decay=0.01"))
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and len(decayed["params"]) == 2
    assert all(p.ndim == 1 for p in plain["params"]) and len(plain["params"]) == 4


def test_distillation_loss():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    assert distillation_loss(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(logits, -logits, 2.0).item() > 0.1


def test_epoch_sharding_is_deterministic_and_disjoint():
    one = epoch_batches(103, 8, seed=0, epoch=0, env=DistEnv())
    assert one == epoch_batches(103, 8, seed=0, epoch=0, env=DistEnv())
    assert one != epoch_batches(103, 8, seed=0, epoch=1, env=DistEnv())
    assert len(one) == 12 and all(len(b) == 8 for b in one)
    shards = [sum(epoch_batches(103, 8, 0, 0, DistEnv(rank=r, world_size=2)), []) for r in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert len(shards[0]) == len(shards[1]) == 48
    assert sorted(eval_indices(7, DistEnv(0, 2)) + eval_indices(7, DistEnv(1, 2))) == list(range(7))


def test_rng_states_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    path = tmp_path / "rng.pt"
    save_checkpoint(path, {"model": {}, "config": {}, "rng": capture_rng()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(load_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="lacks the 'model' or 'config'"):
        load_checkpoint(foreign)


def test_resolved_config_is_plain_yaml(trained):
    run_dir, _ = trained
    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert data["method"] == {"name": "float"}
    assert data["model"]["arch"] == "tiny"


def test_tensorboard_events_written(tmp_path):
    train(smoke_config("run.tensorboard=true", "run.max_steps=4", "run.log_every=1"), tmp_path, resume=False)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_best_checkpoint_only_from_the_final_form(tmp_path, monkeypatch):
    """A method in an intermediate phase (in_final_form False) never provides best.pt."""
    from train.methods import Method

    answers = iter([False, False, True, True])
    monkeypatch.setattr(Method, "in_final_form", lambda self: next(answers))
    result = train(smoke_config("optim.epochs=4"), tmp_path, resume=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] in (3, 4)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert result["val_best_top1"] == pytest.approx(max(float(r["val_acc"]) for r in rows[2:]))


def test_best_checkpoint_falls_back_to_the_final_model(tmp_path, monkeypatch):
    from train.methods import Method

    monkeypatch.setattr(Method, "in_final_form", lambda self: False)
    result = train(smoke_config(), tmp_path, resume=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["global_step"] == 14
    assert result["best_epoch"] == 2


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_without_augmentation_the_teacher_logits_are_computed_once_with_the_same_result(
    trained, tmp_path, monkeypatch
):
    run_dir, _ = trained
    teacher = run_dir / "checkpoints" / "best.pt"
    monkeypatch.setenv("BITAT_EDGE_CACHE", str(tmp_path / "cache"))
    cfg = smoke_config("optim.epochs=1", "data.augment=false", f"distill.teacher={teacher}", "distill.alpha=0.7")
    built: list[object] = []
    original = Trainer._teacher_table

    def spy(self):
        table = original(self)
        built.append(table)
        return table

    monkeypatch.setattr(Trainer, "_teacher_table", spy)
    train(cfg, tmp_path / "table", resume=False)
    assert isinstance(built[0], TeacherTable) and built[0].logits.shape == (230, 10)  # 256 minus 10 % validation
    assert not built[0].cached and len(list((tmp_path / "cache" / "teacher-logits").glob("*.pt"))) == 1
    train(cfg, tmp_path / "again", resume=False)  # same teacher, same images: the cached logits
    assert built[1].cached and torch.equal(built[1].logits, built[0].logits)
    table, again = _final_weights(tmp_path / "table"), _final_weights(tmp_path / "again")
    assert all(torch.equal(again[k], v) for k, v in table.items())
    monkeypatch.setattr(Trainer, "_teacher_table", lambda self: None)  # the teacher forward at every step
    train(cfg, tmp_path / "forward", resume=False)
    forward = _final_weights(tmp_path / "forward")
    for key, value in forward.items():
        assert torch.allclose(table[key].float(), value.float(), atol=1e-4), key
    monkeypatch.setattr(Trainer, "_teacher_table", spy)
    train(smoke_config("optim.epochs=1", f"distill.teacher={teacher}"), tmp_path / "augmented", resume=False)
    assert built[-1] is None  # augmented images differ every epoch: no table


def test_teacher_table_rows_are_the_teacher_logits_and_the_cache_is_keyed_by_teacher_and_data(trained, tmp_path):
    run_dir, _ = trained
    path = run_dir / "checkpoints" / "best.pt"
    teacher, _cfg = build_from_checkpoint(path)
    cfg = smoke_config("data.augment=false")
    dataset = build_datasets(cfg.data, cfg.seed).train
    cache = tmp_path / "cache"
    table = TeacherTable.build(teacher, path, dataset, 50, torch.device("cpu"), cache_dir=cache)
    indices = [7, 0, 229, 31]
    with torch.no_grad():
        expected = teacher(torch.stack([dataset[i][0] for i in indices]))
    assert torch.allclose(table.lookup(indices), expected, atol=1e-5) and not table.cached
    other = build_datasets(smoke_config("data.augment=false", "seed=1").data, 1).train  # another split
    assert not TeacherTable.build(teacher, path, other, 50, torch.device("cpu"), cache_dir=cache).cached
    assert len(list(cache.glob("*.pt"))) == 2
    assert TeacherTable.build(teacher, path, dataset, 50, torch.device("cpu"), cache_dir=cache).cached
    for f in cache.glob("*.pt"):
        f.write_bytes(b"damaged")  # a damaged cache file is recomputed, not trusted
    again = TeacherTable.build(teacher, path, dataset, 50, torch.device("cpu"), cache_dir=cache)
    assert not again.cached and torch.allclose(again.logits, table.logits)


def test_channels_last_trains_to_the_same_result(tmp_path):
    # Summation order differs between the layouts and Adam's first steps amplify tiny gradients,
    # so the weights are not bit-identical; the trained model's quality is the same.
    nchw = train(smoke_config("optim.epochs=2"), tmp_path / "nchw", resume=False)
    nhwc = train(smoke_config("optim.epochs=2", "run.channels_last=true"), tmp_path / "nhwc", resume=False)
    assert nhwc["test_top1"] == pytest.approx(nchw["test_top1"], abs=0.05)
    assert nhwc["test_loss"] == pytest.approx(nchw["test_loss"], rel=0.05)
    model = load_checkpoint(tmp_path / "nhwc" / "checkpoints" / "last.pt")["model"]
    assert all(torch.isfinite(v.float()).all() for v in model.values())
