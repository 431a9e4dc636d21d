"""The train stage's user-facing errors: one base, one sentence each (what is wrong, what to do).

``train.cli`` turns every ``TrainError`` (and every ``bitat_edge.schema.SchemaError``) into a
one-line message without a traceback. The builtin second bases keep ``except ValueError`` /
``except RuntimeError`` callers working.
"""

from __future__ import annotations


class TrainError(Exception):
    """A mistake in what the user gave the train stage (config, data, checkpoint, run directory)."""


class ConfigError(TrainError, ValueError):
    """A config file, a config key or an override is wrong (the message names it)."""


class DatasetError(TrainError, RuntimeError):
    """A dataset is missing, corrupt or misconfigured; the message says where and what to do."""


class DataConfigError(DatasetError, ConfigError):
    """A ``data`` config value is invalid."""


class CheckpointError(TrainError, RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


class ResumeError(TrainError, RuntimeError):
    """The run directory cannot be resumed with this config."""


class ExportError(TrainError, RuntimeError):
    """The model cannot be exported, or the exported ONNX does not compute what PyTorch computes."""


class RunDirError(TrainError, ValueError):
    """The run directory cannot be written: it is not a run, or it holds an input training would delete."""
