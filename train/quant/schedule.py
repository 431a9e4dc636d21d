"""Progressive stage schedules: which layers turn binary at which step, bottom to top."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Granularity = Literal["layer", "block"]
GRANULARITIES: tuple[str, ...] = get_args(Granularity)


def block_key(name: str) -> str:
    """The block a layer belongs to: its name up to the first numeric component
    (``blocks.3.conv3x3`` -> ``blocks.3``, ``layer1.0.conv1`` -> ``layer1.0``), else its parent module
    (a top-level layer is a block of its own)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if re.fullmatch(r"\d+", part):
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


def group_stages(names: list[str], granularity: str) -> list[list[str]]:
    """Split layers (bottom to top) into stages: one per layer, or one per block of consecutive layers."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"method.granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if granularity == "layer":
        return [[n] for n in names]
    stages: list[list[str]] = []
    for name in names:
        if stages and block_key(stages[-1][-1]) == block_key(name):
            stages[-1].append(name)
        else:
            stages.append([name])
    return stages


@dataclass(frozen=True)
class StageSchedule:
    """Stage ``s`` starts at step ``s * stage_steps`` and ends where the next starts; the last
    stage's layers turn binary at ``finetune_start - stage_steps`` and everything stays binary, and
    trains jointly, to ``total_steps``."""

    stages: list[list[str]]
    stage_steps: int
    total_steps: int

    @classmethod
    def build(cls, stages: list[list[str]], *, total_steps: int, progression: float) -> StageSchedule:
        """Spread the stage starts evenly over the first ``progression`` fraction of the steps."""
        if not 0.0 < progression < 1.0:
            raise ValueError(f"method.progression must be in (0, 1), got {progression}")
        stage_steps = max(1, round(progression * total_steps / len(stages)))
        if len(stages) * stage_steps >= total_steps:
            raise ValueError(
                f"the BiTAT schedule needs more than {len(stages)} stages x {stage_steps} steps but the run has "
                f"{total_steps}; lower method.progression or train longer"
            )
        return cls(stages, stage_steps, total_steps)

    def start(self, stage: int) -> int:
        return stage * self.stage_steps

    def end(self, stage: int) -> int:
        return (stage + 1) * self.stage_steps

    @property
    def finetune_start(self) -> int:
        return len(self.stages) * self.stage_steps

    def stages_started(self, step: int) -> int:
        """How many stages have started by ``step`` (their layers are binary from then on)."""
        return min(len(self.stages), step // self.stage_steps + 1)
