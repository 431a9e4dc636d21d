"""Process-group plumbing for ``torchrun`` (DDP) and the deterministic epoch sharding.

A single process is the same code with ``world_size == 1``: no process group, no-op collectives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else the CPU; ``cuda`` -> this rank's GPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        return torch.device("cuda", local_rank)
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} was asked for but CUDA is not available; use auto or cpu")
    return device


def init_distributed(device_preference: str) -> tuple[DistEnv, torch.device]:
    """Join the ``torchrun`` job described by WORLD_SIZE/RANK/LOCAL_RANK (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    env = DistEnv(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_preference, env.local_rank)
    if env.active and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return env, device


def shutdown(env: DistEnv) -> None:
    """Leave the process group (no-op for a single process)."""
    if env.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def all_reduce_sum(env: DistEnv, values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over the ranks (in place) and return it."""
    if env.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, env: DistEnv) -> list[list[int]]:
    """This rank's training batches for ``epoch``: a permutation seeded by (seed, epoch), split into
    equal per-rank shards (the tail that does not divide evenly is dropped), full batches only."""
    order = np.random.default_rng([seed, epoch]).permutation(num_items)
    per_rank = num_items // env.world_size
    shard = order[env.rank :: env.world_size][:per_rank]
    count = per_rank // batch_size
    return [shard[i * batch_size : (i + 1) * batch_size].tolist() for i in range(count)]


def eval_indices(num_items: int, env: DistEnv) -> list[int]:
    """This rank's share of an evaluation set (every item exactly once over all ranks)."""
    return list(range(env.rank, num_items, env.world_size))
