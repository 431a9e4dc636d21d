"""The distillation teacher's logits on the training set, computed once.

When the training images are the same every epoch (no augmentation), the frozen teacher's output
for an image never changes, so a run needs one teacher forward per image instead of one per image
and epoch, batched at the eval batch size without autograd. ``TeacherTable`` holds those logits
indexed like the training dataset; the engine looks them up by each batch's dataset indices.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TeacherTable:
    """Teacher logits ``(N, classes)`` for the ``N`` items of a dataset, on ``device``, and the
    seconds their computation took."""

    def __init__(self, logits: torch.Tensor, seconds: float = 0.0) -> None:
        self.logits = logits
        self.seconds = seconds

    @classmethod
    @torch.no_grad()
    def compute(
        cls,
        teacher: nn.Module,
        dataset: Dataset,
        batch_size: int,
        device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> TeacherTable:
        """Run ``teacher`` (eval mode) once over ``dataset`` in order."""
        started = time.perf_counter()
        was_training = teacher.training
        teacher.eval()
        parts = []
        for x, _y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            parts.append(teacher(x.to(device).contiguous(memory_format=memory_format)).float())
        teacher.train(was_training)
        return cls(torch.cat(parts), time.perf_counter() - started)

    def lookup(self, indices: list[int] | torch.Tensor) -> torch.Tensor:
        """The logits of the dataset items ``indices`` (one batch), in that order."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.logits.device)
        return self.logits.index_select(0, index)
