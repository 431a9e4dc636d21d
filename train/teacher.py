"""The distillation teacher's logits on the training set, computed once and cached on disk.

When the training images are the same every epoch (no augmentation), the frozen teacher's output
for an image never changes, so a run needs one teacher forward per image instead of one per image
and epoch, batched at the eval batch size without autograd. Runs that share a teacher and a
training set (a benchmark's seeds and variants, a rerun) share those logits through a cache file
named by the SHA-256 of the teacher checkpoint's bytes and of the input tensor, so a changed
teacher or changed data can never be served stale logits. ``TeacherTable`` holds the logits
indexed like the training dataset; the engine looks them up by each batch's dataset indices.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
import zipfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bitat_edge.atomic import atomic_open


def default_cache_dir() -> Path:
    """``$BITAT_EDGE_CACHE/teacher-logits``, else ``~/.cache/bitat-edge/teacher-logits``."""
    return Path(os.environ.get("BITAT_EDGE_CACHE", "~/.cache/bitat-edge")).expanduser() / "teacher-logits"


def _key(teacher_path: str | os.PathLike[str], x: torch.Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(Path(teacher_path).read_bytes())
    digest.update(str((tuple(x.shape), str(x.dtype))).encode())
    digest.update(x.contiguous().numpy().tobytes())
    return digest.hexdigest()


class TeacherTable:
    """Teacher logits ``(N, classes)`` for the ``N`` items of a dataset, on ``device``; ``seconds``
    the table took to build and ``cached`` whether it came from the cache file."""

    def __init__(self, logits: torch.Tensor, seconds: float = 0.0, cached: bool = False) -> None:
        self.logits = logits
        self.seconds = seconds
        self.cached = cached

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        teacher: nn.Module,
        teacher_path: str | os.PathLike[str],
        dataset: Dataset,
        batch_size: int,
        device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
        cache_dir: Path | None = None,
    ) -> TeacherTable:
        """The logits of ``teacher`` (eval mode) on ``dataset`` in order, read from ``cache_dir`` when
        a file for this teacher and these inputs is there, else computed and written there."""
        started = time.perf_counter()
        x = torch.cat([batch for batch, _y in DataLoader(dataset, batch_size=batch_size, shuffle=False)])
        path = None if cache_dir is None else cache_dir / f"{_key(teacher_path, x)}.pt"
        if path is not None and path.is_file():
            try:
                logits = torch.load(path, map_location=device, weights_only=True)
            except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError):
                logits = None  # a damaged cache file is recomputed and replaced
            if isinstance(logits, torch.Tensor) and logits.ndim == 2 and len(logits) == len(x):
                return cls(logits, time.perf_counter() - started, cached=True)
        was_training = teacher.training
        teacher.eval()
        logits = torch.cat([
            teacher(x[i:i + batch_size].to(device).contiguous(memory_format=memory_format)).float()
            for i in range(0, len(x), batch_size)
        ])
        teacher.train(was_training)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb") as handle:
                torch.save(logits.cpu(), handle)
        return cls(logits, time.perf_counter() - started)

    def lookup(self, indices: list[int] | torch.Tensor) -> torch.Tensor:
        """The logits of the dataset items ``indices`` (one batch), in that order."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.logits.device)
        return self.logits.index_select(0, index)
