"""The training loop shared by every method: single process or DDP under ``torchrun``.

``train(cfg, run_dir, resume=...)`` builds data, model, method, optimizer and LR schedule, trains
with checkpoints every ``run.checkpoint_every_steps`` steps and at every epoch end, evaluates the
best checkpoint on the test split, writes ``summary.json`` and exports. Resuming from ``last.pt``
continues at the same step with the same RNG states, so a killed CPU run ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from bitat_edge import outdir
from bitat_edge.atomic import write_json
from bitat_edge.layout import RunDir
from train.assembly import assemble, build_from_checkpoint, schedule_lengths
from train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from train.config import TrainConfig, run_config_diff
from train.data import build_datasets
from train.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    epoch_batches,
    eval_indices,
    init_distributed,
    shutdown,
)
from train.errors import CheckpointError, ResumeError, RunDirError
from train.methods import MethodContext
from train.rundir import clear_previous, peak_rss_mib, remove_stale_temp_files, write_env, write_metrics
from train.teacher import TeacherTable, default_cache_dir


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak LR at ``step`` (0-based): linear warm-up, then cosine/linear decay or constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay only on parameters with more than one dimension (not BN, biases, scales)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if cfg.optim.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) on temperature-softened distributions, averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student.float() / t, dim=1), F.log_softmax(teacher.float() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, env: DistEnv,
             num_workers: int = 0) -> tuple[float, float, int]:
    """(mean cross-entropy, top-1 fraction, images) of ``model`` on ``dataset``, summed over all ranks."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    subset = Subset(dataset, eval_indices(len(dataset), env))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x).float()
        totals[0] += F.cross_entropy(logits, y, reduction="sum")
        totals[1] += (logits.argmax(1) == y).sum()
        totals[2] += y.numel()
    all_reduce_sum(env, totals)
    model.train(was_training)
    count = int(totals[2].item())
    if count == 0:
        return float("nan"), float("nan"), 0
    return totals[0].item() / count, totals[1].item() / count, count


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Logger:
    """Rank-0 console lines (through tqdm so bars stay intact) and optional TensorBoard scalars."""

    def __init__(self, env: DistEnv, run: RunDir, tensorboard: bool) -> None:
        self.enabled = env.is_main
        self.tensorboard = self.enabled and tensorboard
        self.log_dir = run.tensorboard
        self.writer: Any = None

    def line(self, message: str) -> None:
        if self.enabled:
            tqdm.write(message, file=sys.stderr)

    def scalars(self, values: dict[str, float], step: int, prefix: str) -> None:
        if self.tensorboard:
            if self.writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.log_dir))
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Trainer:
    """One training run in one process (rank); see ``train``."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, env: DistEnv, device: torch.device) -> None:
        self.cfg, self.env, self.device = cfg, env, device
        self.run = RunDir(run_dir)
        self.session_start = time.perf_counter()
        self.log = _Logger(env, self.run, cfg.run.tensorboard)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
        _seed_everything(cfg.seed)

        self.splits = build_datasets(cfg.data, cfg.seed)
        self.info = self.splits.info
        self.batch_size, self.steps_per_epoch, self.total_steps = schedule_lengths(
            cfg, len(self.splits.train), env.world_size)
        self.warmup_steps = round(cfg.optim.warmup_epochs * self.steps_per_epoch)

        self.ctx = MethodContext(device=device, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
                                 calibration_batches=self._calibration_batches, log=self.log.line)
        self.method, self.model = assemble(cfg, self.info, self.ctx, init_weights=True)
        self.memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, cfg)
        self.amp = cfg.run.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.teacher = self._load_teacher()
        self.teacher_table = self._teacher_table()
        self.ddp: nn.Module = (
            DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None,
                                    find_unused_parameters=True)
            if env.active else self.model
        )
        # Progress, restored on resume.
        self.global_step = 0
        self.epoch = 0
        self.position = 0
        self.best_val = -1.0
        self.rows: list[dict[str, Any]] = []
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
        self.elapsed_before = 0.0
        self.train_seconds = 0.0
        self.train_images = 0

    # -- pieces ---------------------------------------------------------------------------------
    def _calibration_batches(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = self.splits.calibration
        order = np.random.default_rng(self.cfg.seed).permutation(len(dataset))[: n * self.batch_size].tolist()
        loader = DataLoader(Subset(dataset, order), batch_size=self.batch_size, shuffle=False,
                            num_workers=self.cfg.data.num_workers)
        for x, y in loader:
            yield x.to(self.device), y.to(self.device)

    def _load_teacher(self) -> nn.Module | None:
        teacher_path = self.cfg.distill.teacher
        if not teacher_path or self.cfg.distill.alpha == 0:
            return None
        try:
            teacher, teacher_cfg = build_from_checkpoint(teacher_path, self.device)
        except CheckpointError as exc:
            raise CheckpointError(f"distill.teacher: {exc}") from None
        with torch.no_grad():
            classes = teacher(torch.zeros((1, *self.info.input_shape), device=self.device)).shape[1]
        if classes != self.info.num_classes:
            raise CheckpointError(f"distill.teacher {teacher_path} predicts {classes} classes, data "
                                  f"{self.cfg.data.name!r} has {self.info.num_classes}; pick a matching teacher")
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.log.line(f"distilling from {teacher_path} ({teacher_cfg.model.arch}, method {teacher_cfg.method.name})")
        return teacher

    def _teacher_table(self) -> TeacherTable | None:
        """Without augmentation the teacher sees the same images every epoch: its logits once, up front."""
        if self.teacher is None:
            return None
        self.teacher.to(memory_format=self.memory_format)
        if self.cfg.data.augment:
            return None
        table = TeacherTable.build(self.teacher, self.cfg.distill.teacher, self.splits.train,
                                   self.cfg.data.eval_batch_size, self.device, self.memory_format, default_cache_dir())
        self.log.line(f"teacher logits of {len(table.logits)} training images in {table.seconds:.0f} s"
                      f"{' (cached)' if table.cached else ''}")
        return table

    def _loader(self, epoch: int, skip: int) -> tuple[DataLoader, list[list[int]]]:
        """The epoch's loader from batch ``skip`` on, and the dataset indices of its batches."""
        batches = epoch_batches(len(self.splits.train), self.batch_size, self.cfg.seed, epoch, self.env)[skip:]
        self.splits.train.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        return DataLoader(self.splits.train, batch_sampler=batches, num_workers=self.cfg.data.num_workers,
                          pin_memory=self.device.type == "cuda", generator=generator), batches

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method": self.method.state_dict(),
            "rng": capture_rng(),
            "global_step": self.global_step,
            "epoch": self.epoch,
            "position": self.position,
            "best_val_top1": self.best_val,
            "metrics_rows": self.rows,
            "epoch_sums": self.sums.cpu(),
            "elapsed_seconds": self.elapsed_before + time.perf_counter() - self.session_start,
            "train_seconds": self.train_seconds,
            "train_images": self.train_images,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "config": self.cfg.to_dict(),
            "data_info": self.info.to_dict(),
        }

    def _save(self, path: Path) -> None:
        if self.env.is_main:
            save_checkpoint(path, self._state())

    def restore(self) -> None:
        """Continue from ``checkpoints/last.pt`` (see ``check_resumable``)."""
        state = load_checkpoint(self.run.last)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(state["method"])
        self.global_step, self.epoch, self.position = state["global_step"], state["epoch"], state["position"]
        self.best_val = state["best_val_top1"]
        self.rows = list(state["metrics_rows"])
        self.sums = state["epoch_sums"].to(self.device)
        self.elapsed_before = state["elapsed_seconds"]
        self.train_seconds, self.train_images = state["train_seconds"], state["train_images"]
        restore_rng(state["rng"])
        self.log.line(f"resuming {self.run.root} at step {self.global_step} "
                      f"(epoch {self.epoch + 1}, batch {self.position} of {self.steps_per_epoch})")

    def _lr_at(self, step: int) -> float:
        o = self.cfg.optim
        return o.lr * lr_factor(step, self.total_steps, self.warmup_steps, o.schedule, o.min_lr_ratio)

    def _step(self, x: torch.Tensor, y: torch.Tensor, indices: list[int]) -> None:
        cfg = self.cfg
        self.method.on_step_start(self.global_step, self.model, self.ctx)
        lr = self._lr_at(self.global_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()
        with autocast:
            logits = self.ddp(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.optim.label_smoothing)
            if self.teacher is not None:
                if self.teacher_table is not None:
                    teacher_logits = self.teacher_table.lookup(indices)
                else:
                    with torch.no_grad():
                        teacher_logits = self.teacher(x)
                alpha = cfg.distill.alpha
                loss = (1 - alpha) * loss + alpha * distillation_loss(logits, teacher_logits, cfg.distill.temperature)
            extra = self.method.extra_loss(self.model)
            if extra is not None:
                loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            n = y.numel()
            self.sums[0] += loss.detach().double() * n
            self.sums[1] += (logits.argmax(1) == y).sum()
            self.sums[2] += n

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> None:
        cfg = self.cfg
        while self.global_step < self.total_steps or self.position > 0:
            epoch_start = time.perf_counter()
            images_before = self.sums[2].item()
            bar = tqdm(total=self.steps_per_epoch, initial=self.position, desc=f"epoch {self.epoch + 1}/{cfg.optim.epochs}",
                       disable=not (cfg.run.progress and self.env.is_main), leave=False, dynamic_ncols=True)
            self.model.train()
            loader, batches = self._loader(self.epoch, self.position)
            for (x, y), indices in zip(loader, batches, strict=True):
                if self.global_step >= self.total_steps:
                    break
                x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                self._step(x, y.to(self.device, non_blocking=True), indices)
                self.global_step += 1
                self.position += 1
                bar.update(1)
                if self.global_step % cfg.run.log_every == 0:
                    self._log_progress(bar, epoch_start, images_before)
                if self.global_step % cfg.run.checkpoint_every_steps == 0:
                    self._account(epoch_start, images_before)
                    epoch_start, images_before = time.perf_counter(), self.sums[2].item()
                    self._save(self.run.last)
            bar.close()
            self._account(epoch_start, images_before)
            self._end_epoch()

    def _account(self, since: float, images_before: float) -> None:
        """Add the time and images since ``since`` to the run totals (this rank's images times world size)."""
        self.train_seconds += time.perf_counter() - since
        self.train_images += int(self.sums[2].item() - images_before) * self.env.world_size

    def _log_progress(self, bar: tqdm, since: float, images_before: float) -> None:
        seen = max(1.0, self.sums[2].item())
        rate = (self.sums[2].item() - images_before) * self.env.world_size / max(1e-9, time.perf_counter() - since)
        values = {"loss": self.sums[0].item() / seen, "acc": self.sums[1].item() / seen,
                  "lr": self._lr_at(self.global_step - 1)}
        bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{100 * values['acc']:.1f}%", img_s=f"{rate:.0f}")
        self.log.scalars({**values, "images_per_s": rate, **self.method.step_metrics()}, self.global_step, "train")

    def _end_epoch(self) -> None:
        sums = all_reduce_sum(self.env, self.sums.clone())
        val_loss, val_acc, val_count = evaluate(self.model, self.splits.val, self.cfg.data.eval_batch_size,
                                                self.device, self.env, self.cfg.data.num_workers)
        epoch_seconds = self.train_seconds - sum(r["epoch_seconds"] for r in self.rows)
        seen = max(1.0, sums[2].item())
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "lr": self._lr_at(self.global_step - 1),
            "train_loss": sums[0].item() / seen,
            "train_acc": sums[1].item() / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "images_per_s": sums[2].item() / max(1e-9, epoch_seconds),
            "epoch_seconds": epoch_seconds,
            **self.method.step_metrics(),
        }
        self.rows.append(row)
        self.log.line(f"epoch {row['epoch']}/{self.cfg.optim.epochs} step {row['step']}: "
                      f"train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}% | "
                      f"val loss {val_loss:.4f} acc {100 * val_acc:.2f}% | {row['images_per_s']:.0f} img/s")
        self.log.scalars({k: v for k, v in row.items() if k not in ("epoch", "step")}, self.global_step, "epoch")
        # A method in an intermediate phase (partly binarized) never provides the best checkpoint.
        improved = self.method.in_final_form() and (val_count == 0 or val_acc > self.best_val)
        if improved and val_count:
            self.best_val = val_acc
        self.epoch += 1
        self.position = 0
        self.sums.zero_()
        if self.env.is_main:
            write_metrics(self.run.metrics, self.rows)
            if improved:
                self._save(self.run.best)
            self._save(self.run.last)

    def finish(self) -> dict[str, Any]:
        """Evaluate best.pt on the test split and write summary.json (rank 0); return the summary."""
        if self.env.is_main and not self.run.best.is_file():
            self.log.line("the method never reached its final form at an epoch end; best.pt is the final model")
            self.best_val = self.rows[-1]["val_acc"]
            self._save(self.run.best)
        barrier(self.env)
        best = load_checkpoint(self.run.best)
        self.model.load_state_dict(best["model"])
        self.method.load_state_dict(best["method"])
        test_loss, test_acc, test_count = evaluate(self.model, self.splits.test, self.cfg.data.eval_batch_size,
                                                   self.device, self.env, self.cfg.data.num_workers)
        summary = {
            "name": self.cfg.name,
            "test_top1": test_acc,
            "test_loss": test_loss,
            "test_images": test_count,
            "val_best_top1": self.best_val,
            "best_epoch": best["epoch"],
            "epochs": self.epoch,
            "steps": self.global_step,
            "wall_seconds": self.elapsed_before + time.perf_counter() - self.session_start,
            "train_seconds": self.train_seconds,
            "images_per_s": self.train_images / max(1e-9, self.train_seconds),
            "peak_rss_mib": peak_rss_mib(),
            "world_size": self.env.world_size,
            "device": str(self.device),
        }
        self.log.line(f"test top-1 of best.pt (epoch {best['epoch']}): {100 * test_acc:.2f}% on {test_count} images")
        if self.env.is_main:
            write_json(self.run.summary, summary)
        self.log.close()
        return summary


def check_resumable(run: RunDir, cfg: TrainConfig) -> None:
    """Refuse to resume ``run`` when its last.pt was written with a config that computes something else."""
    differ = run_config_diff(load_checkpoint(run.last)["config"], cfg)
    if differ:
        raise ResumeError(
            f"{run.root} holds a run with a different config (differs at: {', '.join(differ[:6])}); "
            "pass --no-resume to start over there or use another --out"
        )


def check_run_dir(run: RunDir, cfg: TrainConfig, resume: bool) -> None:
    """Refuse a run directory that is not empty and not a run, and, when starting over (which clears the
    previous run's files), one that holds the checkpoint training starts from or distills from."""
    inputs = [] if resume else [Path(p) for p in (cfg.model.init_from, cfg.distill.teacher) if p]
    outdir.check(run.root, not_ours=lambda p: RunDir(p).not_a_run(), what="run directory", inputs=inputs,
                 error=RunDirError)


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (resuming from its last.pt when ``resume``); return the summary.

    Under ``torchrun`` every rank calls this; only rank 0 writes files, and exports
    (``train.export.export_run``) at the end when ``run.export`` is set."""
    env, device = init_distributed(cfg.run.device)
    try:
        run = RunDir(Path(run_dir))
        if resume:
            check_resumable(run, cfg)
        if env.is_main:
            check_run_dir(run, cfg, resume)
        trainer = Trainer(cfg, run.root, env, device)  # reads data and checkpoints, writes nothing
        if env.is_main:
            remove_stale_temp_files(run)
            if not resume:
                clear_previous(run)
            cfg.save(run.config)
        if resume:
            trainer.restore()
        if env.is_main:
            write_env(run, cfg.seed, trainer.global_step)
        trainer.fit()
        summary = trainer.finish()
        if env.is_main and cfg.run.export:
            from train.export import export_run

            onnx_path = export_run(run.root)
            trainer.log.line(f"exported {onnx_path}")
        barrier(env)
        return summary
    finally:
        shutdown(env)
